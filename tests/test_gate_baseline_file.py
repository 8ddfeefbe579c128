"""`python -m image_classifier.gate --baseline FILE`: the drop check against a metrics file given
on the command line (tests/test_gate.py covers a baseline on other classes, and revisions).
A model better than the baseline, or worse within gate.max_drop, passes; one that drops more is
refused with exit status 1 and the numbers; the output names the file compared with."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from image_classifier import gate

CLASSES = ("cat", "dog", "bird")


def write_reports(root: Path, accuracy: float, classes: tuple[str, ...] | None = CLASSES) -> Path:
    """metrics.json and, beside it, eval/evaluated_model.json as evaluate writes them."""
    (root / "eval").mkdir(parents=True, exist_ok=True)
    metrics = {"accuracy": accuracy, "n_test": 3000, "baseline_linear_accuracy": 0.4}
    (root / "metrics.json").write_text(json.dumps(metrics))
    evaluated = {"model_version": "v", "warning": None}
    if classes:
        evaluated["classes"] = list(classes)
    (root / "eval" / "evaluated_model.json").write_text(json.dumps(evaluated))
    return root / "metrics.json"


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text("gate:\n  min_value: 0.5\n  max_drop: 0.02\n")
    write_reports(tmp_path / "reports", 0.9)
    return tmp_path


PASSED, REFUSED = "quality gate passed", "quality gate FAILED: not deploying"


@pytest.mark.parametrize(
    ("before", "status", "verdict", "line"),
    [
        (0.85, 0, PASSED, "PASS: accuracy 0.8500 -> 0.9000, change +0.0500"),
        (0.91, 0, PASSED, "PASS: accuracy 0.9100 -> 0.9000, change -0.0100"),
        (0.95, 1, REFUSED, "FAIL: accuracy 0.9500 -> 0.9000, change -0.0500"),
    ],
    ids=["better", "worse_within_max_drop", "worse_beyond_max_drop"],
)
def test_the_model_is_judged_against_the_baseline_file(
    project, tmp_path_factory, capsys, before, status, verdict, line
):
    baseline = write_reports(tmp_path_factory.mktemp("baseline"), before)
    assert gate.main(["--baseline", str(baseline)]) == status
    out = capsys.readouterr().out.splitlines()
    assert out[0] == (
        f"comparison: against {baseline}, trained for the same 3 classes: the drop check applies"
    )
    assert f"{line} (largest allowed drop 0.0200)" in out
    assert out[-1] == verdict
    # The other checks are made too, and passed: only the drop decides here.
    assert "PASS: accuracy = 0.9000 (minimum 0.5000)" in out


def test_a_baseline_files_classes_come_from_its_older_class_report(
    project, tmp_path_factory, capsys
):
    """A baseline evaluated before evaluated_model.json named the classes: its own
    class_report.csv, beside it, tells that it is the same task."""
    root = tmp_path_factory.mktemp("old")
    baseline = write_reports(root, 0.99, classes=None)
    (root / "eval" / "class_report.csv").write_text(
        "class,precision,recall,f1,support\n" + "".join(f"{c},1,1,1,3\n" for c in CLASSES)
    )
    assert gate.main(["--baseline", str(baseline)]) == 1
    out = capsys.readouterr().out
    assert f"against {baseline}, trained for the same 3 classes" in out
    assert "FAIL: accuracy 0.9900 -> 0.9000" in out


def test_a_baseline_file_and_a_revision_are_not_both_accepted(project, capsys):
    with pytest.raises(SystemExit) as stopped:
        gate.main(["--baseline", "reports/metrics.json", "--baseline-rev", "HEAD"])
    assert stopped.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_a_missing_baseline_file_fails_with_one_line_naming_it(project, capsys):
    missing = project / "typo" / "metrics.json"
    assert gate.main(["--baseline", str(missing)]) == 1
    out = capsys.readouterr().out
    assert str(missing) in out and "quality gate FAILED" in out


def test_an_unreadable_baseline_file_fails_with_one_line_naming_it(project, capsys):
    damaged = project / "old-metrics.json"
    damaged.write_text("{not json", encoding="utf-8")
    assert gate.main(["--baseline", str(damaged)]) == 1
    out = capsys.readouterr().out
    assert f"FAIL: {damaged} is not a metrics.json evaluate wrote" in out
    assert "quality gate FAILED" in out
