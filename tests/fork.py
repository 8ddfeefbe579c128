"""A project as the tests build it: the package's code and pipeline, the test's own params and
data. The repository's params.yaml, data/ and reports/ belong to whoever forked it, so no test
reads them; the defaults come from the code (image_classifier.params)."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from image_classifier.params import Params, parse_params

ROOT = Path(__file__).resolve().parents[1]
CODE = ("src", "pyproject.toml", ".dvcignore", ".gitignore")
# .dvc/config's sections the pipeline needs; a fork's remotes stay out of the tests' projects.
DVC_CONFIG = '[core]\n    analytics = false\n    autostage = true\n[cache]\n    type = "hardlink"\n'


def merge(raw: dict, overrides: dict) -> dict:
    """`raw` with `overrides` written over it, nested mappings merged key by key."""
    out = dict(raw)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def params_dict(overrides: dict | None = None) -> dict:
    """Every key at the code's default, with `overrides` applied: a user's params.yaml."""
    # through JSON: tuples (list params) become the lists YAML writes
    raw = merge(json.loads(json.dumps(dataclasses.asdict(Params()))), overrides or {})
    parse_params(raw)  # a test's own typo fails here, not inside a stage
    return raw


def write_params(path: Path, overrides: dict | None = None) -> Path:
    path.write_text(yaml.safe_dump(params_dict(overrides), sort_keys=False), encoding="utf-8")
    return path


def set_params(repo: Path, overrides: dict) -> None:
    """Edit the project's params.yaml as a user does: change some values, keep the rest."""
    raw = yaml.safe_load((repo / "params.yaml").read_text(encoding="utf-8"))
    (repo / "params.yaml").write_text(yaml.safe_dump(merge(raw, overrides), sort_keys=False))


def pipeline_stages() -> dict:
    """dvc.yaml's stages as the package defines them, without `sample`: a project that brings
    its own images has run `dvc remove sample` (a fork may have done so already)."""
    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))
    dvc["stages"].pop("sample", None)
    return dvc


def env() -> dict[str, str]:
    """The environment of a user's shell inside the venv: its scripts first on PATH."""
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}


def sh(cwd: Path, *cmd: str, **extra: str) -> str:
    result = subprocess.run(cmd, cwd=cwd, env={**env(), **extra}, capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def copy_project(repo: Path, overrides: dict) -> Path:
    """The package's code and pipeline (no data, no outputs) in a new git repository, with
    params.yaml at the code's defaults plus `overrides` and an empty relabel file."""
    for name in CODE:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, repo / name)
    (repo / "dvc.yaml").write_text(yaml.safe_dump(pipeline_stages(), sort_keys=False))
    (repo / ".dvc").mkdir()
    (repo / ".dvc" / "config").write_text(DVC_CONFIG)
    raw = params_dict(overrides)
    (repo / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    relabel = repo / raw["data"]["relabel"]
    relabel.parent.mkdir(parents=True, exist_ok=True)
    relabel.write_text("path,label\n")
    sh(repo, "git", "init", "-q")
    sh(repo, "git", "config", "user.email", "test@example.com")
    sh(repo, "git", "config", "user.name", "test")
    return repo


def chance(scores: dict, metric: str, n_classes: int) -> float:
    """What guessing scores on `metric` on a run's own test split: the majority baseline that
    evaluate wrote beside the metric in metrics.json, or a uniform guess's 1/n_classes when
    that is more."""
    return max(float(scores[f"baseline_majority_{metric}"]), 1 / n_classes)


def assert_learnt(scores: dict, n_classes: int, share: float, metric: str = "accuracy") -> None:
    """The network's `metric` is above chance (`chance`) by at least `share` of the headroom
    chance leaves: 0.5 asks halfway from chance to perfect."""
    level = chance(scores, metric, n_classes)
    needed = level + share * (1 - level)
    assert scores[metric] >= needed - 1e-9, (
        f"{metric} {scores[metric]:.4f} is not above chance {level:.4f} by {share:.0%} of the "
        f"headroom (needs {needed:.4f}): {scores}"
    )
