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

from fork import params_dict

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "image_classifier"


def module_file(dotted: str) -> Path | None:
    """The file of a package module ("data.store" -> src/image_classifier/data/store.py), or
    of a subpackage whose __init__.py holds code ("evaluation" ->
    src/image_classifier/evaluation/__init__.py): importing anything from it runs that code.
    An __init__.py that is only a docstring changes no stage's result."""
    if not dotted:
        return None
    path = PACKAGE.joinpath(*dotted.split(".")).with_suffix(".py")
    if path.is_file():
        return path
    init = PACKAGE.joinpath(*dotted.split("."), "__init__.py")
    if init.is_file():
        body = ast.parse(init.read_text(encoding="utf-8")).body
        if body and ast.get_docstring(ast.Module(body=body, type_ignores=[])) is not None:
            body = body[1:]
        return init if body else None
    return None


def imported_modules(path: Path) -> set[str]:
    """Dotted names of the image_classifier modules one file imports (at any level of it)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module != "image_classifier" and not node.module.startswith(
                "image_classifier."
            ):
                continue
            base = node.module.removeprefix("image_classifier").lstrip(".")
            found.add(base)
            found.update(f"{base}.{alias.name}".lstrip(".") for alias in node.names)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                found.add(alias.name.removeprefix("image_classifier."))
    # Importing data.store runs data/__init__.py first: each parent package counts too.
    found |= {name.rsplit(".", k)[0] for name in found for k in range(1, name.count(".") + 1)}
    return {name for name in found if module_file(name)}


def closure(module: str) -> set[str]:
    seen, todo = set(), [module]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(imported_modules(module_file(name)) - seen)
    return seen


def test_imported_modules_reads_both_import_forms(tmp_path):
    assert {"atomic", "config", "data.store"} <= imported_modules(PACKAGE / "prepare.py")
    assert {"data.store", "training.fit_loop"} <= imported_modules(PACKAGE / "train.py")
    assert "preprocessing" in closure("prepare")  # through data.store_writer and data.store


def stage_deps(module: str) -> set[str]:
    return {module_file(m).relative_to(ROOT).as_posix() for m in closure(module)}


def test_every_stage_lists_exactly_its_import_closure():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    problems = []
    for name, stage in stages.items():
        ours = re.fullmatch(r"python -m image_classifier\.(\w+)", stage["cmd"])
        if ours is None:  # a stage the project's owner added runs code of theirs
            continue
        module = ours.group(1)
        want = stage_deps(module)
        have = {d for d in stage["deps"] if d.startswith("src/")}
        if missing := sorted(want - have):
            problems.append(f"{name}: missing {missing}")
        if extra := sorted(have - want):
            problems.append(f"{name}: not imported {extra}")
    assert not problems, "\n".join(problems)


def test_only_the_split_depends_on_the_raw_folder():
    """prepare reads raw files too, but only those the manifests name with their content hash,
    so data/splits stands in for the folder and DVC hashes its listing once per repro."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    raw = {name for name, s in stages.items() if "${data.raw_dir}" in s.get("deps", [])}
    assert raw == {"split"}
    assert "data/splits" in stages["prepare"]["deps"]


def test_subpackages_import_nothing_when_imported():
    """A subpackage's __init__ stays empty of imports, so that importing one library (say
    data.store, for the web app) never loads its neighbours (training loads TensorFlow)."""
    for init in PACKAGE.glob("*/__init__.py"):
        tree = ast.parse(init.read_text(encoding="utf-8"))
        imports = [n for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom)]
        assert not imports, f"{init.relative_to(ROOT)} imports something"


def keys_named(tree: dict, names: set[str], path: str = "") -> list[str]:
    found = []
    for key, value in tree.items():
        if key in names:
            found.append(f"{path}{key}")
        if isinstance(value, dict):
            found += keys_named(value, names, f"{path}{key}.")
    return found


def test_no_whole_params_section_holds_a_key_dvc_drops_from_its_run_cache_key():
    """DVC hashes a stage's params into its run-cache key without any key named `size` or
    `nfiles` (at any depth), so a section listed whole that holds one would let
    `dvc repro` restore outputs made with another value of it. List such params as leaves."""
    params = params_dict()
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    for name, stage in stages.items():
        for entry in stage.get("params", []):
            if isinstance(entry, str) and isinstance(params.get(entry), dict):
                assert not keys_named(params[entry], {"size", "nfiles"}), (name, entry)
    assert keys_named({"image": {"size": 1}}, {"size"}) == ["image.size"]
