"""Quality gate: may this model be deployed?

    python -m image_classifier.gate [--metrics reports/metrics.json] [--baseline-rev main]

Judges the gate metric (params.yaml `gate.metric`) of reports/metrics.json, the exported model's
scores on the test split. Every model must be at least `gate.min_value` and beat, by
`evaluate.baseline_margin`, both chance and the linear baseline in the same metrics. Chance is
the best of the majority baseline's value of the same metric and what a uniform guess over the
classes scores (1/classes for accuracy, balanced accuracy and the precision, recall and F1
averages; k/classes for top-k accuracy; 0 for cohen_kappa; 0.5 for ROC AUC), and the model's
one-sided 95 % lower confidence bound over the test images must be above it too, so a small
test split's luck does not pass a model that learnt nothing.

With a baseline, the metrics file committed at a git revision (--baseline-rev) or a file
(--baseline), the model must also not fall more than `gate.max_drop` below it, but only when
both models were trained for the same classes (reports/eval/evaluated_model.json names them;
reports/eval/class_report.csv for revisions older than that). A baseline on other classes, or
one that names none, is another task: the gate judges the model alone. The first line of the
output says which comparison was made. Exit status 0 passes, 1 fails, 2 on an invalid
params.yaml; the reasons are printed either way. Used by .github/workflows/deploy.yml, and
locally the same way.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from image_classifier import config
from image_classifier.evaluation.metrics import baseline_name, beats_chance, required_over_baseline
from image_classifier.params import GateParams, ParamsError, load_params


@dataclass(frozen=True)
class Verdict:
    passed: bool
    lines: tuple[str, ...]


@dataclass(frozen=True)
class Reports:
    """One evaluation as the gate sees it: its metrics, and the classes its model was trained
    for (None when its reports name none)."""

    metrics: dict
    classes: tuple[str, ...] | None
    source: str  # where it came from, for the messages: "revision main", a file name


NO_BASELINE = "no baseline given (--baseline-rev REV compares with the metrics committed there)"


def class_text(classes: Sequence[str], shown: int = 6) -> str:
    names = ", ".join(classes[:shown]) + (", ..." if len(classes) > shown else "")
    return f"{len(classes)} classes: {names}"


def comparison(current: Reports, baseline: Reports | None, why_none: str) -> tuple[bool, str]:
    """Whether the drop check applies, and the line saying which comparison the gate makes.
    Metrics of models trained for other classes measure another task: comparing them would
    refuse the first model on new data for not matching the old data's numbers."""
    alone = "comparison: this model alone (gate.min_value, chance, the linear baseline): "
    if baseline is None:
        return False, f"{alone}{why_none}; no drop check"
    if current.classes is None:
        return False, (
            f"{alone}{current.source} names no classes for this model (re-run `dvc repro`), so "
            f"whether {baseline.source} is the same task is unknown; no drop check"
        )
    if baseline.classes is None:
        return False, (
            f"{alone}{baseline.source} names no classes (its reports predate the class list), "
            "so whether it is the same task is unknown; no drop check"
        )
    if set(baseline.classes) != set(current.classes):
        return False, (
            f"{alone}{baseline.source} was trained for other classes "
            f"({class_text(baseline.classes)}; this model: {class_text(current.classes)}); "
            "no drop check"
        )
    return True, (
        f"comparison: against {baseline.source}, trained for the same "
        f"{len(current.classes)} classes: the drop check applies"
    )


def judge(
    current: Reports,
    baseline: Reports | None,
    gate: GateParams,
    margin: float = 0.0,
    why_none: str = NO_BASELINE,
) -> Verdict:
    """Pure decision: this model's reports, the baseline's (None: none, `why_none` says why),
    the thresholds, and the margin by which the network must beat chance and the linear
    baseline in the same metrics."""
    name, scores = gate.metric, current.metrics
    compare, said = comparison(current, baseline, why_none)
    if name not in scores:
        return Verdict(
            False, (said, f"FAIL: metric {name!r} is not in the metrics ({sorted(scores)})")
        )
    value = float(scores[name])
    lines = [said]
    ok = value >= gate.min_value
    lines.append(f"{'PASS' if ok else 'FAIL'}: {name} = {value:.4f} (minimum {gate.min_value:.4f})")
    n_classes = len(current.classes) if current.classes is not None else None
    chance = beats_chance(scores, name, n_classes, margin)
    if chance is None:
        lines.append(
            f"note: neither a majority baseline for {name} in the metrics nor the class count; "
            "skipped the chance check"
        )
    else:
        ok = ok and chance.passed
        lines.append(f"{'PASS' if chance.passed else 'FAIL'}: {chance.text}")
    linear = scores.get(baseline_name("linear", name))
    if linear is None:
        lines.append(f"note: no linear baseline for {name} in the metrics; skipped that check")
    else:
        beats = value >= required_over_baseline(float(linear), margin) - 1e-9
        ok = ok and beats
        lines.append(
            f"{'PASS' if beats else 'FAIL'}: {name} {value:.4f} vs linear baseline "
            f"{float(linear):.4f} (must beat it by evaluate.baseline_margin = {margin:.4f})"
        )
    if compare and baseline is not None:
        if name not in baseline.metrics:
            lines.append(f"note: {baseline.source} has no {name}; skipped the drop check")
        else:
            before = float(baseline.metrics[name])
            drop = before - value
            drop_ok = drop <= gate.max_drop + 1e-12
            lines.append(
                f"{'PASS' if drop_ok else 'FAIL'}: {name} {before:.4f} -> {value:.4f}, change "
                f"{value - before:+.4f} (largest allowed drop {gate.max_drop:.4f})"
            )
            ok = ok and drop_ok
    return Verdict(ok, tuple(lines))


def classes_from_evaluated(text: str) -> tuple[str, ...] | None:
    """The classes evaluated_model.json names; None for one written before it named them."""
    classes = json.loads(text).get("classes")
    return tuple(str(c) for c in classes) if classes else None


def classes_from_class_report(text: str) -> tuple[str, ...] | None:
    """The `class` column of class_report.csv, which every evaluate has written: the class
    list of a revision older than evaluated_model.json's."""
    rows = list(csv.DictReader(io.StringIO(text)))
    return tuple(row["class"] for row in rows) if rows and "class" in rows[0] else None


def read_classes(read: Callable[[Path], str | None], eval_dir: Path) -> tuple[str, ...] | None:
    """The classes evaluate wrote into eval_dir, through `read` (a file's text, or None when
    there is no such file): the working tree's or a git revision's."""
    evaluated = read(eval_dir / config.EVALUATED_MODEL_FILE)
    found = classes_from_evaluated(evaluated) if evaluated is not None else None
    if found is None:
        report = read(eval_dir / "class_report.csv")
        found = classes_from_class_report(report) if report is not None else None
    return found


def eval_dir_of(metrics: Path) -> Path:
    """Where evaluate writes its other reports, beside a metrics.json: reports/eval/."""
    return metrics.parent / config.EVAL_DIR.name


def read_working(path: Path) -> str | None:
    return path.read_text(encoding="utf-8") if path.is_file() else None


class BaselineError(RuntimeError):
    """A metrics file or the baseline revision cannot be read: the gate fails, and the drop
    check is never skipped silently."""


def check_rev(rev: str) -> None:
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


def file_at_rev(rev: str, path: Path) -> str | None:
    """A file as committed at a git revision (checked by check_rev); None when that commit has
    no such file."""
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
    return shown.stdout


def metrics_at_rev(rev: str, path: Path) -> dict | None:
    """The metrics file as committed at a git revision; None only when that commit has no such
    file (the first model). A revision git cannot find is an error, never "no baseline"."""
    check_rev(rev)
    text = file_at_rev(rev, path)
    return json.loads(text) if text is not None else None


def reports_in(metrics: Path, name: str) -> Reports:
    """A metrics.json in the working tree and the classes evaluate wrote beside it."""
    try:
        found = json.loads(metrics.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BaselineError(f"{metrics} not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BaselineError(f"{metrics} is not a metrics.json evaluate wrote ({exc})") from None
    if not isinstance(found, dict):
        raise BaselineError(f"{metrics} is not a metrics.json evaluate wrote (not a mapping)")
    return Reports(found, read_classes(read_working, eval_dir_of(metrics)), name)


def reports_at_rev(rev: str, metrics: Path) -> Reports | None:
    """The metrics and classes committed at a revision; None when it has no metrics file."""
    found = metrics_at_rev(rev, metrics)
    if found is None:
        return None
    classes = read_classes(lambda path: file_at_rev(rev, path), eval_dir_of(metrics))
    return Reports(found, classes, f"revision {rev}")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m image_classifier.gate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--metrics",
        type=Path,
        default=config.METRICS_FILE,
        help="this model's metrics; its classes are read from eval/ beside it",
    )
    parser.add_argument("--params", type=Path, default=config.PARAMS_FILE)
    base = parser.add_mutually_exclusive_group()
    base.add_argument(
        "--baseline",
        type=Path,
        help="a baseline metrics.json file (its classes from eval/ beside it, when there)",
    )
    base.add_argument(
        "--baseline-rev",
        help="git revision whose committed metrics (and classes) are the baseline",
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
    baseline, why_none = None, NO_BASELINE
    try:
        current = reports_in(args.metrics, str(eval_dir_of(args.metrics)))
        if args.baseline:
            baseline = reports_in(args.baseline, str(args.baseline))
        elif args.baseline_rev:
            baseline = reports_at_rev(args.baseline_rev, args.metrics)
            why_none = f"revision {args.baseline_rev} has no {args.metrics} (the first model)"
    except BaselineError as exc:
        print(f"FAIL: {exc}")
        print("quality gate FAILED: not deploying")
        return 1
    verdict = judge(current, baseline, params.gate, params.evaluate.baseline_margin, why_none)
    print("\n".join(verdict.lines))
    print("quality gate passed" if verdict.passed else "quality gate FAILED: not deploying")
    return 0 if verdict.passed else 1


if __name__ == "__main__":
    sys.exit(main())
