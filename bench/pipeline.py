"""Time the pipeline the way a new user meets it, and check that it is reproducible.

    python bench/pipeline.py [--runs 2] [--keep DIR]

For each run: `git clone` this repository's HEAD into a temp folder, `dvc repro` there (the
environment is the current one, already installed), then a no-op `dvc repro`. Prints the wall
times, the test metrics and the two baselines on the same test split; with two runs, also
whether the split manifests are byte-identical and how far the metrics moved. --keep DIR
keeps the last run's clone there (with its sample data and exported model, which
bench/predict.py --workspace and bench/serve.py --model-dir DIR/saved_models can use).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import print_header

ROOT = Path(__file__).resolve().parents[1]


def timed(cmd: list[str], cwd: Path) -> float:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def one_run(workdir: Path) -> dict:
    repo = workdir / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(repo)], check=True)
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
    parser.add_argument("--keep", type=Path, help="keep the last run's clone here (new folder)")
    args = parser.parse_args()
    if args.keep and args.keep.exists():
        parser.error(f"--keep {args.keep} exists")
    print_header("TensorFlow", "Keras", "LiteRT", "DVC")
    results = []
    for i in range(args.runs):
        with tempfile.TemporaryDirectory() as tmp:
            result = one_run(Path(tmp))
            if args.keep and i == args.runs - 1:
                shutil.move(Path(tmp) / "clone", args.keep)
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
