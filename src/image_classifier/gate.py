"""Quality gate: may this model be deployed?

    python -m image_classifier.gate [--metrics reports/metrics.json] [--baseline-rev main]

Passes when the gate metric (params.yaml `gate.metric`) is at least `gate.min_value`, beats the
linear baseline in the same metrics by `evaluate.baseline_margin`, and has not fallen more than
`gate.max_drop` below the baseline: the metrics file committed at a git
revision (--baseline-rev) or a file (--baseline). Exit status 0 passes, 1 fails; the reason is
printed either way. Used by .github/workflows/deploy.yml, and locally the same way.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from image_classifier import config
from image_classifier.evaluation.metrics import baseline_name, required_over_baseline
from image_classifier.params import GateParams, ParamsError, load_params


@dataclass(frozen=True)
class Verdict:
    passed: bool
    lines: tuple[str, ...]


def judge(current: dict, baseline: dict | None, gate: GateParams, margin: float = 0.0) -> Verdict:
    """Pure decision: the metrics now, the baseline's (None: no baseline yet), the thresholds,
    and the margin by which the network must beat the linear baseline in the same metrics."""
    name = gate.metric
    if name not in current:
        return Verdict(False, (f"FAIL: metric {name!r} is not in the metrics ({sorted(current)})",))
    value = float(current[name])
    lines = []
    ok = value >= gate.min_value
    verb = "PASS" if ok else "FAIL"
    lines.append(f"{verb}: {name} = {value:.4f} (minimum {gate.min_value:.4f})")
    linear = current.get(baseline_name("linear", name))
    if linear is None:
        lines.append(f"note: no linear baseline for {name} in the metrics; skipped that check")
    else:
        beats = value >= required_over_baseline(float(linear), margin) - 1e-9
        ok = ok and beats
        lines.append(
            f"{'PASS' if beats else 'FAIL'}: {name} {value:.4f} vs linear baseline "
            f"{float(linear):.4f} (must beat it by evaluate.baseline_margin = {margin:.4f})"
        )
    if baseline is None or name not in baseline:
        lines.append("note: no baseline metrics to compare with; skipped the drop check")
    else:
        before = float(baseline[name])
        drop = before - value
        drop_ok = drop <= gate.max_drop + 1e-12
        verb = "PASS" if drop_ok else "FAIL"
        lines.append(
            f"{verb}: {name} {before:.4f} -> {value:.4f}, change {-drop:+.4f} "
            f"(largest allowed drop {gate.max_drop:.4f})"
        )
        ok = ok and drop_ok
    return Verdict(ok, tuple(lines))


class BaselineError(RuntimeError):
    """The baseline revision cannot be read: the drop check must not be skipped silently."""


def metrics_at_rev(rev: str, path: Path) -> dict | None:
    """The metrics file as committed at a git revision; None only when that commit has no such
    file (the first model). A revision git cannot find is an error, never "no baseline"."""
    found = subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"],
        capture_output=True,
        text=True,
    )
    if found.returncode != 0:
        raise BaselineError(
            f"baseline revision {rev!r} not found in this clone (a shallow checkout? "
            "fetch it, e.g. actions/checkout with fetch-depth: 0)"
        )
    listed = subprocess.run(
        ["git", "ls-tree", "--name-only", rev, "--", path.as_posix()],
        capture_output=True,
        text=True,
        check=True,
    )
    if not listed.stdout.strip():
        return None
    shown = subprocess.run(
        ["git", "show", f"{rev}:{path.as_posix()}"], capture_output=True, text=True, check=True
    )
    return json.loads(shown.stdout)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m image_classifier.gate", description=__doc__)
    parser.add_argument("--metrics", type=Path, default=config.METRICS_FILE)
    parser.add_argument("--params", type=Path, default=config.PARAMS_FILE)
    base = parser.add_mutually_exclusive_group()
    base.add_argument("--baseline", type=Path, help="a baseline metrics.json file")
    base.add_argument(
        "--baseline-rev", help="git revision whose committed metrics are the baseline"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        params = load_params(args.params)
    except ParamsError as exc:
        print(f"gate: {exc}", file=sys.stderr)
        return 2
    if not args.metrics.is_file():
        print(f"FAIL: {args.metrics} not found: run `dvc repro` (or `dvc pull`) first")
        return 1
    current = json.loads(args.metrics.read_text(encoding="utf-8"))
    if args.baseline:
        baseline = json.loads(args.baseline.read_text(encoding="utf-8"))
    elif args.baseline_rev:
        try:
            baseline = metrics_at_rev(args.baseline_rev, args.metrics)
        except BaselineError as exc:
            print(f"FAIL: {exc}")
            print("quality gate FAILED: not deploying")
            return 1
    else:
        baseline = None
    verdict = judge(current, baseline, params.gate, params.evaluate.baseline_margin)
    print("\n".join(verdict.lines))
    print("quality gate passed" if verdict.passed else "quality gate FAILED: not deploying")
    return 0 if verdict.passed else 1


if __name__ == "__main__":
    sys.exit(main())
