"""Time the pipeline the way a new user meets it, and check that it is reproducible.

    python bench/pipeline.py [--runs 2] [--keep DIR]

For each run, in a temp folder: a fresh project of the package's code and pipeline with
params.yaml at the code's defaults (tests/fork.py), the bundled digits written into data/raw
by the package's sample code and tracked by `dvc add` (the README's "your own images" steps:
a fork's dvc.yaml may have no `sample` stage, and its params.yaml and data/ are its own, so
none of them is read), then `dvc repro` (the environment is the current one, already
installed) and a no-op `dvc repro`. Prints the wall times, the test metrics and the two
baselines on the same test split; with two runs, also whether the split manifests are
byte-identical and how far the metrics moved. --keep DIR keeps the last run's project there
(with its digits and exported model, which bench/predict.py --workspace and bench/serve.py
--model-dir DIR/saved_models can use).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from machine import print_header

from image_classifier.sample_data import write_sample

import fork


def timed(cmd: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, env=fork.env(), check=True, capture_output=True)
    return time.perf_counter() - start


def one_run(workdir: Path) -> dict:
    repo = workdir / "project"
    repo.mkdir()
    fork.copy_project(repo, {})
    write_sample(repo / "data" / "raw")
    fork.sh(repo, "dvc", "add", "-q", "data/raw")
    fork.sh(repo, "git", "add", "-A")
    fork.sh(repo, "git", "commit", "-qm", "digits")
    full = timed(["dvc", "repro"], repo)
    noop = timed(["dvc", "repro"], repo)
    return {
        "full_repro_s": round(full, 1),
        "noop_repro_s": round(noop, 2),
        "metrics": json.loads((repo / "reports/metrics.json").read_text()),
        "manifests": {p.name: p.read_bytes() for p in sorted((repo / "data/splits").iterdir())},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1, choices=(1, 2))
    parser.add_argument("--keep", type=Path, help="keep the last run's project here (new folder)")
    args = parser.parse_args()
    if args.keep and args.keep.exists():
        parser.error(f"--keep {args.keep} exists")
    print_header("TensorFlow", "Keras", "LiteRT", "DVC")
    results = []
    for i in range(args.runs):
        with tempfile.TemporaryDirectory() as tmp:
            result = one_run(Path(tmp))
            if args.keep and i == args.runs - 1:
                shutil.move(Path(tmp) / "project", args.keep)
        results.append(result)
        m = result["metrics"]
        errors = round((1 - m["accuracy"]) * m["n_test"])
        print(
            f"run {i + 1}: full dvc repro {result['full_repro_s']} s, no-op dvc repro "
            f"{result['noop_repro_s']} s, test accuracy {m['accuracy']:.4f} ({errors} errors "
            f"of {m['n_test']}), macro F1 {m['f1_macro']:.4f}; baselines on the same split: "
            f"linear {m['baseline_linear_accuracy']:.4f}, "
            f"majority class {m['baseline_majority_accuracy']:.4f}"
        )
    if len(results) == 2:
        a, b = results
        same = a["manifests"] == b["manifests"]
        drift = max(abs(a["metrics"][k] - b["metrics"][k]) for k in a["metrics"])
        print(f"split manifests identical: {same}; largest metric difference: {drift:.6f}")


if __name__ == "__main__":
    main()
