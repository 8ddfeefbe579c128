"""Small data from scratch: the README's small-data params on a family of small folders.

    python bench/small_data.py [--datasets shapes,glyphs] [--seeds 5] [--set train.x=y]

For each dataset of image_classifier/synthetic_sets.py and each seed 0..N-1 (split and
training both seeded with it), in a fresh workspace: writes the folder and params.yaml (the
code's defaults under the README's "Colour photos and small datasets" block and --set
overrides; never the repository's params.yaml or data/relabel.csv, which are its fork's),
runs split, prepare, train, export and evaluate, one process each, as `dvc repro` runs them
(its own hashing and caching aside). Prints one row per run: test accuracy, the linear
baseline, whether the network beats it by evaluate.baseline_margin, the network's accuracy
on its own training images (unaugmented), the learning rate used, the range test's share of
the train stage, seconds, evaluate's diagnosis. Then the summary the targets are stated in.
--repro DATASET also times a real `dvc repro` of that dataset (seed 0) in a fresh project
built from the package's code and pipeline (tests/fork.py).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from machine import print_header

import fork

ROOT = Path(__file__).resolve().parents[1]
HEADING = "### Colour photos and small datasets"
STAGES = ("split", "prepare", "train", "export", "evaluate")


def readme_block() -> dict:
    text = (ROOT / "README.md").read_text(encoding="utf-8").split(HEADING, 1)[1]
    return yaml.safe_load(re.search(r"```yaml\n(.*?)```", text, re.S).group(1))


def parse_set(items: list[str]) -> dict:
    """--set train.learning_rate=auto -> {"train": {"learning_rate": "auto"}}."""
    out: dict = {}
    for item in items:
        key, value = item.split("=", 1)
        *path, last = key.split(".")
        node = out
        for part in path:
            node = node.setdefault(part, {})
        node[last] = yaml.safe_load(value)
    return out


def params_for(seed: int, overrides: dict) -> dict:
    """The code's defaults under the README's block, the seed and --set: the repository's
    params.yaml is its fork's, so it never enters a run."""
    raw = fork.merge(readme_block(), {"split": {"seed": seed}, "train": {"seed": seed}})
    return fork.params_dict(fork.merge(raw, overrides))


def write_relabel(work: Path, raw: dict) -> None:
    """An empty relabel file: the repository's data/relabel.csv holds its fork's rows."""
    relabel = work / raw["data"]["relabel"]
    relabel.parent.mkdir(parents=True, exist_ok=True)
    relabel.write_text("path,label\n")


def one_run(job: tuple[str, int, dict]) -> dict:
    """Write the dataset and params.yaml, run the five stages as `dvc repro` runs them (one
    `python -m image_classifier.<stage>` process each) in a temporary workspace; the row."""
    name, seed, overrides = job
    from image_classifier import synthetic_sets
    from image_classifier.evaluation.metrics import required_over_baseline
    from image_classifier.params import parse_params

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "TQDM_DISABLE": "1"}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        raw = params_for(seed, overrides)  # a typo in --set fails here, before any work
        params = parse_params(raw)
        n = synthetic_sets.write(name, work / "data" / "raw", seed)
        write_relabel(work, raw)
        (work / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
        spans = {}
        for stage in STAGES:
            start = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", f"image_classifier.{stage}"],
                cwd=work,
                env=env,
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            spans[stage] = time.perf_counter() - start
        scores = json.loads((work / "reports/metrics.json").read_text())
        fit = json.loads((work / "reports/train/metrics.json").read_text())
        evaluated = json.loads((work / "reports/eval/evaluated_model.json").read_text())
    finder = fit.get("lr_find", {})
    return {
        "dataset": name,
        "seed": seed,
        "images": n,
        "accuracy": scores["accuracy"],
        "linear": scores["baseline_linear_accuracy"],
        # the network against the linear baseline alone; evaluate's warning also covers chance
        "margin_met": scores["accuracy"]
        >= required_over_baseline(
            scores["baseline_linear_accuracy"], params.evaluate.baseline_margin
        )
        - 1e-9,
        "train_fit_accuracy": fit.get("fit", {}).get("train_accuracy"),
        "learning_rate": finder.get("learning_rate", params.train.learning_rate),
        "finder_s": finder.get("seconds", 0.0),
        "train_s": spans["train"],
        "total_s": sum(spans.values()),
        "diagnosis": (evaluated.get("diagnosis") or {}).get("case", ""),
    }


def fmt(row: dict) -> str:
    fit = row["train_fit_accuracy"]
    rate = row["learning_rate"]
    share = row["finder_s"] / row["train_s"] if row["train_s"] else 0
    return (
        f"| {row['dataset']} | {row['seed']} | {row['images']} | {row['accuracy']:.3f} | "
        f"{row['linear']:.3f} | {'yes' if row['margin_met'] else 'NO'} | "
        f"{'-' if fit is None else f'{fit:.3f}'} | "
        f"{rate if isinstance(rate, str) else f'{rate:.2g}'} | {share:.0%} | "
        f"{row['train_s']:.0f} | {row['total_s']:.0f} | {row['diagnosis']} |"
    )


def summary(rows: list[dict]) -> list[str]:
    met = sum(r["margin_met"] for r in rows)
    high = [r for r in rows if r["linear"] >= 0.95]
    high_ok = [
        r
        for r in high
        if r["accuracy"] >= r["linear"] - 1e-9 and (r["train_fit_accuracy"] or 0) >= 0.98
    ]
    largest = max(r["images"] for r in rows)
    worst = max(r["total_s"] for r in rows if r["images"] == largest)
    by_set: dict[str, list[dict]] = {}
    for r in rows:
        by_set.setdefault(r["dataset"], []).append(r)
    shares = sorted(r["finder_s"] / r["train_s"] for r in rows if r["finder_s"])
    lines = [
        f"beats the linear baseline by the margin: {met}/{len(rows)} runs ({met / len(rows):.0%})",
        f"linear >= 0.95: {len(high_ok)}/{len(high)} runs with train accuracy >= 0.98 and "
        "test >= linear",
        f"slowest run at {largest} images: {worst:.0f} s",
    ]
    if shares:
        lines.append(
            f"range test / train stage: median {shares[len(shares) // 2]:.1%}, "
            f"largest {shares[-1]:.1%}"
        )
    for name, rs in by_set.items():
        mean = sum(r["accuracy"] for r in rs) / len(rs)
        lin = sum(r["linear"] for r in rs) / len(rs)
        lines.append(
            f"  {name}: mean accuracy {mean:.3f}, linear {lin:.3f}, "
            f"margin met {sum(r['margin_met'] for r in rs)}/{len(rs)}"
        )
    return lines


def time_repro(name: str, overrides: dict) -> tuple[float, dict[str, float]]:
    """`dvc repro` of the dataset, seed 0, in a copy of the project: the user's wall time, and
    each stage's span, from its "Running stage" line to the next (or the end)."""
    from image_classifier import synthetic_sets

    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "repo"
        repo.mkdir()
        # The package's code and pipeline (no `sample` stage), this run's params and an
        # empty relabel file: nothing of the repository's own data or params.
        fork.copy_project(repo, params_for(0, overrides))
        synthetic_sets.write(name, repo / "data" / "raw", 0)
        env = fork.env()
        # The README's "your own images" steps.
        for cmd in (
            ["git", "config", "gc.auto", "0"],
            ["dvc", "add", "-q", "data/raw"],
            ["git", "add", "-A"],
            ["git", "commit", "-qm", "ten_class"],
        ):
            subprocess.run(cmd, cwd=repo, check=True, env=env, capture_output=True)
        start = time.perf_counter()
        proc = subprocess.Popen(
            ["dvc", "repro"], cwd=repo, env=env, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        lines, starts = [], []
        for line in proc.stdout:
            lines.append(line)
            if found := re.match(r"Running stage '(\w+)'", line):
                starts.append((found.group(1), time.perf_counter()))
        elapsed = time.perf_counter() - start
        if proc.wait() != 0:
            tail = "".join(lines[-30:])
            raise SystemExit(f"dvc repro of {name!r} failed ({proc.returncode}):\n{tail}")
        ends = [t for _, t in starts[1:]] + [start + elapsed]
        return elapsed, {stage: end - t for (stage, t), end in zip(starts, ends, strict=True)}


def main() -> None:
    from image_classifier.synthetic_sets import DATASETS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--workers", type=int, default=1, help="runs at once (times grow)")
    parser.add_argument("--repro", metavar="DATASET", help="also time `dvc repro` on it")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    overrides = parse_set(args.set)
    print_header("TensorFlow", "Keras", "LiteRT")
    print(f"params: README block {readme_block()}, overrides {overrides or 'none'}")
    print(f"workers: {args.workers}")
    jobs = [
        (name, seed, overrides) for name in args.datasets.split(",") for seed in range(args.seeds)
    ]
    print("| dataset | seed | images | test acc | linear | margin met | train acc (fit) | "
          "rate | range test / train | train s | total s | diagnosis |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    rows = []
    with multiprocessing.get_context("spawn").Pool(args.workers) as pool:
        for row in pool.imap(one_run, jobs):
            rows.append(row)
            print(fmt(row), flush=True)
    if rows:  # --seeds 0 --repro DATASET times the repro alone
        print()
        print("\n".join(summary(rows)))
    if args.repro:
        total, stages = time_repro(args.repro, overrides)
        spans = ", ".join(f"{stage} {s:.0f}" for stage, s in stages.items())
        print(f"dvc repro of {args.repro!r} (seed 0): {total:.0f} s ({spans}; DVC's work included)")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
