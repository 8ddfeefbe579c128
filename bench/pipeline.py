"""Time the pipeline the way a new user meets it, and check that it is reproducible.

    python bench/pipeline.py [--runs 2]

For each run: `git clone` this repository's HEAD into a temp folder, `dvc repro` there (the
environment is the current one, already installed), then a no-op `dvc repro`. Prints the wall
times and the test metrics; with two runs, also whether the split manifests are byte-identical
and how far the metrics moved.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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
    args = parser.parse_args()
    results = []
    for i in range(args.runs):
        with tempfile.TemporaryDirectory() as tmp:
            result = one_run(Path(tmp))
        results.append(result)
        m = result["metrics"]
        print(
            f"run {i + 1}: full dvc repro {result['full_repro_s']} s, no-op dvc repro "
            f"{result['noop_repro_s']} s, test accuracy {m['accuracy']:.4f}, "
            f"macro F1 {m['f1_macro']:.4f}, n_test {m['n_test']}"
        )
    if len(results) == 2:
        a, b = results
        same = a["manifests"] == b["manifests"]
        drift = max(abs(a["metrics"][k] - b["metrics"][k]) for k in a["metrics"])
        print(f"split manifests identical: {same}; largest metric difference: {drift:.6f}")


if __name__ == "__main__":
    main()
