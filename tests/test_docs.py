"""README.md and docs/*.md must match the repository a newcomer has in front of them.

Every check reads the Markdown as text: nothing runs, nothing touches the network.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MODULE_MAP = ROOT / "docs" / "architecture.md"

# Outputs of running the pipeline or the web app: a fresh clone does not have them, so the
# docs may name them although they are not on disk. Each must be named in dvc.yaml or in the
# code (test_generated_outputs_are_named_in_the_pipeline_or_the_code).
GENERATED = {
    "data/raw",  # stage sample, or your own images (dvc add)
    "data/splits",  # stage split
    "data/splits/scan.json",
    "data/prepared",  # stage prepare
    "reports/split.json",
    "saved_models/model.keras",  # stage train
    "saved_models/classes.json",
    "saved_models/trained_on.csv",
    "saved_models/features.npy",
    "saved_models/features.json",
    "saved_models/served_graph.tflite",
    "saved_models/served_graph.json",
    "saved_models/model.tflite",  # stage export
    "saved_models/model.json",
    "saved_models/example.png",
    "saved_models/examples",
    "saved_models/ood.npz",
    "reports/test_probabilities.npz",
    "reports/model_card.md",  # stage evaluate
    "models/base",  # the model you continue from (train.init_from), made by the docs' commands
    "var/app.sqlite",  # the web app's drift counts and feedback (serve.database)
    "data/raw/.feedback.csv",  # feedback export's manifest
}
# Where a generated path may be named: the pipeline definition and the code.
SOURCES = [
    ROOT / "dvc.yaml",
    *sorted((ROOT / "src").rglob("*.py")),
    *sorted((ROOT / "webapp").rglob("*.py")),
]

PATH_SUFFIXES = {
    *(".py", ".yaml", ".yml", ".json", ".csv", ".md", ".txt", ".toml", ".lock"),
    *(".tflite", ".keras", ".npz", ".npy", ".png", ".sqlite", ".html", ".js", ".css"),
}
NOT_A_PATH = re.compile(r"[\s<>*${}=]|://")  # placeholders, globs, shell, key=value, URLs
HISTORY = ("used to", "this round", "previously", "no longer", "before the move")

FENCE = re.compile(r"^```.*?^```[^\n]*$", re.M | re.S)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
CODE_SPAN = re.compile(r"`([^`\n]+)`")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.M)


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def prose(doc: Path) -> str:
    """The document without its fenced code blocks (commands and their comments)."""
    return FENCE.sub("", doc.read_text(encoding="utf-8"))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(doc: Path) -> set[str]:
    return {slug(h) for h in HEADING.findall(prose(doc))}


def links(doc: Path) -> list[tuple[str, str]]:
    """(file part, anchor) of every relative link; the file part is "" for a link within doc."""
    found = []
    for target in LINK.findall(prose(doc)):
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        file, _, anchor = target.partition("#")
        found.append((file, anchor))
    return found


def named_paths(doc: Path) -> set[str]:
    """Code spans that look like repository paths: a '/' or a known file suffix."""
    found = set()
    for span in CODE_SPAN.findall(prose(doc)):
        if NOT_A_PATH.search(span) or span.startswith(("/", "-")):  # routes, absolute, flags
            continue
        if "/" in span or Path(span).suffix in PATH_SUFFIXES:
            found.add(span.rstrip("/"))
    return found


def test_docs_exist():
    assert MODULE_MAP in DOCS
    assert len(DOCS) >= 4, [rel(d) for d in DOCS]


@pytest.mark.parametrize("doc", DOCS, ids=rel)
def test_relative_links_point_to_files(doc):
    missing = [f for f, _ in links(doc) if f and not (doc.parent / f).exists()]
    assert not missing, f"{rel(doc)} links to missing files: {missing}"


@pytest.mark.parametrize("doc", DOCS, ids=rel)
def test_link_anchors_name_a_heading(doc):
    broken = []
    for file, anchor in links(doc):
        target = (doc.parent / file) if file else doc
        checkable = anchor and target.suffix == ".md" and target.is_file()
        if checkable and anchor not in anchors(target):
            broken.append(f"{file}#{anchor}")
    assert not broken, f"{rel(doc)} links to headings that do not exist: {broken}"


@pytest.mark.parametrize("doc", DOCS, ids=rel)
def test_named_paths_exist(doc):
    missing = sorted(p for p in named_paths(doc) if p not in GENERATED and not (ROOT / p).exists())
    assert not missing, (
        f"{rel(doc)} names paths that are not in the repository: {missing} "
        "(an output of the pipeline or the app belongs in GENERATED)"
    )


def test_generated_outputs_are_named_in_the_pipeline_or_the_code():
    text = "\n".join(path.read_text(encoding="utf-8") for path in SOURCES)
    unnamed = []
    for path in sorted(GENERATED):
        parts = path.split("/")
        prefixes = ["/".join(parts[:i]) for i in range(len(parts), 0, -1)]
        if not any(p in text for p in prefixes if "/" in p):
            unnamed.append(path)
    assert not unnamed, f"GENERATED lists paths nothing in dvc.yaml or the code writes: {unnamed}"


def test_module_map_lists_every_module_and_bench_script():
    text = MODULE_MAP.read_text(encoding="utf-8")
    section = text.split("\n## Module map\n", 1)[1].split("\n## ", 1)[0]
    listed = set(CODE_SPAN.findall(section))
    modules = [
        *(ROOT / "src" / "image_classifier").rglob("*.py"),
        *(ROOT / "webapp").rglob("*.py"),
        *(ROOT / "bench").glob("*.py"),
    ]
    missing = []
    for path in sorted(modules):
        if rel(path) in listed:
            continue
        # An empty package __init__.py is covered by its package folder.
        empty_init = path.name == "__init__.py" and not path.read_text().strip()
        if not (empty_init and f"{rel(path.parent)}/" in listed):
            missing.append(rel(path))
    assert not missing, f"{rel(MODULE_MAP)}'s module map leaves out: {missing}"


@pytest.mark.parametrize("doc", DOCS, ids=rel)
def test_no_history(doc):
    """The docs say what is, not what changed: no 'used to', 'previously', ..."""
    lines = doc.read_text(encoding="utf-8").splitlines()
    found = [
        f"{rel(doc)}:{number}: {line.strip()}"
        for number, line in enumerate(lines, 1)
        for phrase in HISTORY
        if re.search(rf"\b{phrase}\b", line, re.I)
    ]
    assert not found, "history in the docs:\n" + "\n".join(found)


def test_readme_stays_a_guide():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) < 250, f"README.md has {len(lines)} lines: move detail into docs/"
