"""Assemble what the web app needs to run into one folder: the Heroku slug's source.

    python deploy/bundle.py OUT_DIR

DVC keeps the model out of git, so a plain `git push heroku` would ship a web app with no model.
The deploy workflow instead pulls (or rebuilds) the model with DVC, runs this script, and pushes
OUT_DIR as a one-commit repository to Heroku. Along with the model go its detector's
statistics (ood.npz, for "none of these"), the example images the page offers, and the
evaluation reports and model card the model page shows; no data, tests or image generators do.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from webapp.model_report import FILES as REPORT_FILES  # noqa: E402

FILES = ["Procfile", "requirements.txt", ".python-version", "params.yaml"]
TREES = ["webapp", "src/image_classifier"]
# The image generators of the sample, evaluate's far-OOD sets, the tests and the benchmarks:
# the web app never draws an image (.dockerignore leaves them out of the image too).
GENERATORS = ["src/image_classifier/synthetic.py", "src/image_classifier/synthetic_sets.py"]
MODEL = [
    "saved_models/model.tflite",
    "saved_models/model.json",
    "saved_models/ood.npz",  # the out-of-distribution detector's statistics
    "saved_models/example.png",  # the deploy's smoke check
]
MODEL_TREES = ["saved_models/examples"]  # the page's one-click examples (model.json `examples`)
REPORTS = [f"reports/{name}" for name in REPORT_FILES]


def bundle(out: Path, root: Path = ROOT) -> list[str]:
    missing = [m for m in MODEL + REPORTS if not (root / m).is_file()]
    missing += [t for t in MODEL_TREES if not (root / t).is_dir()]
    if missing:
        raise SystemExit(f"missing {missing}: run `dvc pull` or `dvc repro` first")
    if out.exists() and any(out.iterdir()):
        raise SystemExit(f"{out} is not empty")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", *(Path(g).name for g in GENERATORS))
    for name in FILES + MODEL + REPORTS:
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / name, out / name)
    for tree in TREES + MODEL_TREES:
        shutil.copytree(root / tree, out / tree, ignore=ignore)
    return sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    out = parser.parse_args().out
    out.mkdir(parents=True, exist_ok=True)
    files = bundle(out)
    version = json.loads((out / "saved_models/model.json").read_text())["version"]
    size = sum((out / f).stat().st_size for f in files)
    print(f"bundled {len(files)} files, {size / 2**20:.1f} MiB, model {version} -> {out}")


if __name__ == "__main__":
    sys.exit(main())
