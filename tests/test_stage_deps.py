"""dvc.yaml must list, for every stage, exactly the package modules the stage's code imports.

A module missing from `deps` means DVC would not re-run the stage when that code changes (a
stale model); one listed but not imported re-runs it for nothing. The closure is computed
from the source with `ast`, following imports within the package.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "image_classifier"


def imported_modules(path: Path) -> set[str]:
    """Names of image_classifier modules one file imports (at any level of the file)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "image_classifier":
                found.update(alias.name for alias in node.names)
            elif node.module.startswith("image_classifier."):
                found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("image_classifier."):
                    found.add(alias.name.split(".")[1])
    return {name for name in found if (PACKAGE / f"{name}.py").is_file()}


def closure(module: str) -> set[str]:
    seen, todo = set(), [module]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(imported_modules(PACKAGE / f"{name}.py") - seen)
    return seen


def test_imported_modules_reads_both_import_forms(tmp_path):
    assert {"atomic", "config", "store"} <= imported_modules(PACKAGE / "prepare.py")
    assert "preprocessing" in closure("prepare")  # through decode and store


def test_every_stage_lists_exactly_its_import_closure():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    problems = []
    for name, stage in stages.items():
        module = re.fullmatch(r"python -m image_classifier\.(\w+)", stage["cmd"]).group(1)
        want = {f"src/image_classifier/{m}.py" for m in closure(module)}
        have = {d for d in stage["deps"] if d.startswith("src/")}
        if missing := sorted(want - have):
            problems.append(f"{name}: missing {missing}")
        if extra := sorted(have - want):
            problems.append(f"{name}: not imported {extra}")
    assert not problems, "\n".join(problems)


def test_only_stages_reading_raw_files_depend_on_the_raw_folder():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    raw = {name for name, s in stages.items() if "${data.raw_dir}" in s.get("deps", [])}
    assert raw == {"split", "prepare"}
