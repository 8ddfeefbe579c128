import json
import subprocess
from pathlib import Path

import pytest

from image_classifier import gate
from image_classifier.params import GateParams

GATE = GateParams(metric="accuracy", min_value=0.9, max_drop=0.01)
DIGITS = tuple(str(d) for d in range(10))
SHAPES = ("circle", "square", "star", "triangle")


def reports(metrics: dict, classes=DIGITS, source="reports/eval") -> gate.Reports:
    return gate.Reports(metrics, classes, source)


def base(metrics: dict, classes=DIGITS) -> gate.Reports:
    return gate.Reports(metrics, classes, "revision main")


def check(verdict: gate.Verdict, start: str) -> str:
    """The one line of the verdict that starts with `start`."""
    found = [line for line in verdict.lines if line.startswith(start)]
    assert len(found) == 1, verdict.lines
    return found[0]


def test_passes_above_minimum_without_baseline():
    verdict = gate.judge(reports({"accuracy": 0.95}), None, GATE)
    assert verdict.passed
    assert verdict.lines[0].startswith("comparison: this model alone")
    assert "no baseline given" in verdict.lines[0]


def test_fails_below_minimum():
    verdict = gate.judge(reports({"accuracy": 0.85}), base({"accuracy": 0.85}), GATE)
    assert not verdict.passed and "FAIL: accuracy = 0.8500 (minimum 0.9000)" in verdict.lines


def test_fails_on_a_drop_larger_than_the_tolerance():
    assert gate.judge(reports({"accuracy": 0.985}), base({"accuracy": 0.99}), GATE).passed
    verdict = gate.judge(reports({"accuracy": 0.97}), base({"accuracy": 0.99}), GATE)
    assert not verdict.passed
    assert verdict.lines[0] == (
        "comparison: against revision main, trained for the same 10 classes: the drop check applies"
    )
    assert "largest allowed drop 0.0100" in check(verdict, "FAIL: accuracy 0.9900 -> 0.9700")


def test_a_baseline_on_other_classes_is_not_compared():
    """The first model on a fork's own data: the digits' 0.99 at the baseline revision is
    another task, so the model is judged alone and passes on its own merits."""
    shapes = {"accuracy": 0.8, "n_test": 90, "baseline_linear_accuracy": 0.5}
    verdict = gate.judge(reports(shapes, SHAPES), base({"accuracy": 0.99}), GateParams())
    assert verdict.passed, verdict.lines
    assert verdict.lines[0] == (
        "comparison: this model alone (gate.min_value, chance, the linear baseline): "
        "revision main was trained for other classes (10 classes: 0, 1, 2, 3, 4, 5, ...; "
        "this model: 4 classes: circle, square, star, triangle); no drop check"
    )
    assert not any("->" in line for line in verdict.lines)
    # The same model against a baseline on the same classes is compared, and refused.
    assert not gate.judge(reports(shapes, SHAPES), base({"accuracy": 0.99}, SHAPES), GATE).passed


def test_class_order_does_not_make_another_task():
    verdict = gate.judge(
        reports({"accuracy": 0.95}, SHAPES), base({"accuracy": 0.99}, SHAPES[::-1]), GATE
    )
    assert not verdict.passed and verdict.lines[0].startswith("comparison: against")


@pytest.mark.parametrize(
    ("current", "baseline", "said"),
    [
        (DIGITS, None, "revision main names no classes (its reports predate the class list)"),
        (None, DIGITS, "reports/eval names no classes for this model"),
    ],
)
def test_unknown_classes_are_said_and_judged_alone(current, baseline, said):
    verdict = gate.judge(
        reports({"accuracy": 0.95}, current), base({"accuracy": 0.99}, baseline), GATE
    )
    assert verdict.passed and said in verdict.lines[0] and "no drop check" in verdict.lines[0]


def test_the_real_case_no_better_than_chance_is_refused():
    """600 photo-like JPEGs in 4 classes: 0.28 on 90 test images, where guessing gets 0.25 and
    the linear baseline 0.20. It beats both by the margin, and is still 25 right where
    guessing gets 22.5: refused, whatever the linear baseline scored."""
    scores = {
        "accuracy": 0.28,
        "n_test": 90,
        "baseline_majority_accuracy": 0.25,
        "baseline_linear_accuracy": 0.2,
    }
    verdict = gate.judge(reports(scores, SHAPES), None, GateParams(), margin=0.02)
    assert not verdict.passed
    line = check(verdict, "FAIL: accuracy 0.2800 vs chance 0.2500")
    assert "majority baseline 0.2500 and uniform guess over 4 classes 0.2500" in line
    assert "95% lower bound over 90 test images, 0.2094" in line
    assert check(verdict, "PASS: accuracy 0.2800 vs linear baseline 0.2000")
    assert "PASS: accuracy = 0.2800 (minimum 0.0000)" in verdict.lines  # the default floor
    # A clear winner on the same small test split passes.
    assert gate.judge(reports({**scores, "accuracy": 0.5}, SHAPES), None, GateParams(), 0.02).passed


def test_chance_is_the_best_of_the_majority_baseline_and_one_in_n():
    # Skewed classes: always saying the big one gets 0.7, far above 1/4.
    skewed = {"accuracy": 0.71, "n_test": 10_000, "baseline_majority_accuracy": 0.7}
    verdict = gate.judge(reports(skewed, SHAPES), None, GateParams(), margin=0.02)
    assert not verdict.passed and check(verdict, "FAIL: accuracy 0.7100 vs chance 0.7000")
    assert gate.judge(reports({**skewed, "accuracy": 0.75}, SHAPES), None, GateParams()).passed
    # No majority baseline in the metrics: 1/n alone.
    verdict = gate.judge(reports({"accuracy": 0.3, "n_test": 10_000}, SHAPES), None, GateParams())
    assert "(uniform guess over 4 classes 0.2500): must" in check(verdict, "PASS: accuracy 0.3000")


def test_chance_on_other_metrics():
    gate_f1 = GateParams(metric="f1_macro")
    # The majority baseline's macro F1 is tiny; 1/n is the level to beat.
    scores = {"f1_macro": 0.26, "n_test": 10_000, "baseline_majority_f1_macro": 0.1}
    verdict = gate.judge(reports(scores, SHAPES), None, gate_f1, margin=0.02)
    assert not verdict.passed and check(verdict, "FAIL: f1_macro 0.2600 vs chance 0.2500")
    kappa = GateParams(metric="cohen_kappa")
    verdict = gate.judge(reports({"cohen_kappa": 0.01, "n_test": 10_000}), None, kappa, 0.02)
    assert check(verdict, "FAIL: cohen_kappa 0.0100 vs chance 0.0000")
    assert gate.judge(reports({"cohen_kappa": 0.3, "n_test": 10_000}), None, kappa, 0.02).passed
    weighted = GateParams(metric="f1_weighted")
    verdict = gate.judge(reports({"f1_weighted": 0.9}, None), None, weighted)
    assert verdict.passed and check(verdict, "note: neither a majority baseline")


def test_refuses_a_network_that_does_not_beat_the_linear_baseline_by_the_margin():
    metrics = {"accuracy": 0.96, "baseline_linear_accuracy": 0.95}
    assert gate.judge(reports(metrics), None, GATE, margin=0.01).passed
    verdict = gate.judge(reports(metrics), None, GATE, margin=0.02)
    assert not verdict.passed
    assert (
        "FAIL: accuracy 0.9600 vs linear baseline 0.9500 "
        "(must beat it by evaluate.baseline_margin = 0.0200)"
    ) in verdict.lines


def test_near_the_ceiling_half_the_headroom_is_enough():
    metrics = {"accuracy": 1.0, "baseline_linear_accuracy": 1.0}
    assert gate.judge(reports(metrics), None, GATE, margin=0.02).passed
    # baseline 0.985 + 0.02 would demand more than 1.0; half the headroom asks 0.9925
    good = {"accuracy": 0.995, "baseline_linear_accuracy": 0.985}
    assert gate.judge(reports(good), None, GATE, 0.02).passed
    bad = {"accuracy": 0.99, "baseline_linear_accuracy": 0.985}
    assert not gate.judge(reports(bad), None, GATE, 0.02).passed


def test_the_baseline_check_uses_the_gate_metric():
    gate_f1 = GateParams(metric="f1_macro", min_value=0.5, max_drop=0.01)
    metrics = {"f1_macro": 0.7, "baseline_linear_f1_macro": 0.8, "accuracy": 0.99}
    verdict = gate.judge(reports(metrics), None, gate_f1, margin=0.0)
    assert not verdict.passed and check(verdict, "FAIL: f1_macro 0.7000 vs linear baseline 0.8000")


def test_unknown_metric_fails_clearly():
    verdict = gate.judge(reports({"f1_macro": 0.99}), None, GATE)
    assert not verdict.passed and "'accuracy' is not in the metrics" in verdict.lines[-1]


def test_the_default_floor_leaves_the_work_to_chance_and_the_baselines():
    assert GateParams().min_value == 0.0


# ---- the command, against git revisions ---------------------------------------------------


def git(*args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], check=True)


def write_reports(root: Path, metrics: dict, classes: tuple[str, ...] | None) -> None:
    """reports/ as evaluate writes them; classes None: as evaluate wrote them before
    evaluated_model.json named the classes."""
    (root / "reports/eval").mkdir(parents=True, exist_ok=True)
    (root / "reports/metrics.json").write_text(json.dumps(metrics))
    evaluated = {"model_version": "v", "warning": None}
    if classes:
        evaluated["classes"] = list(classes)
    (root / "reports/eval/evaluated_model.json").write_text(json.dumps(evaluated))


def commit(message: str) -> None:
    git("add", "-A")
    git("commit", "-qm", message)


@pytest.fixture
def repo(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text("gate:\n  min_value: 0.5\n  max_drop: 0.02\n")
    git("init", "-q")
    return tmp_path


def test_cli_against_a_git_baseline(repo, capsys):
    write_reports(repo, {"accuracy": 0.99}, DIGITS)
    commit("base")
    write_reports(repo, {"accuracy": 0.98}, DIGITS)
    assert gate.main(["--baseline-rev", "HEAD"]) == 0
    assert "comparison: against revision HEAD, trained for the same 10 classes" in (
        capsys.readouterr().out
    )
    write_reports(repo, {"accuracy": 0.90}, DIGITS)
    assert gate.main(["--baseline-rev", "HEAD"]) == 1
    out = capsys.readouterr().out
    assert "0.9900 -> 0.9000" in out and "quality gate FAILED" in out
    (repo / "reports/metrics.json").unlink()
    assert gate.main([]) == 1


def test_cli_first_model_on_new_classes_deploys(repo, capsys):
    """The issue's fork: the digits at 0.99 committed, then the fork's own 4 classes."""
    write_reports(repo, {"accuracy": 0.99}, DIGITS)
    commit("digits")
    shapes = {"accuracy": 0.8, "n_test": 90, "baseline_majority_accuracy": 0.25}
    write_reports(repo, {**shapes, "baseline_linear_accuracy": 0.5}, SHAPES)
    assert gate.main(["--baseline-rev", "HEAD"]) == 0
    out = capsys.readouterr().out
    assert "comparison: this model alone" in out and "revision HEAD was trained for other" in out
    assert "quality gate passed" in out
    # The next model on the shapes is compared with the first.
    commit("shapes")
    write_reports(repo, {**shapes, "accuracy": 0.7}, SHAPES)
    assert gate.main(["--baseline-rev", "HEAD"]) == 1
    assert "0.8000 -> 0.7000" in capsys.readouterr().out


def test_cli_reads_an_older_revisions_classes_from_its_class_report(repo, capsys):
    write_reports(repo, {"accuracy": 0.99}, None)
    (repo / "reports/eval/class_report.csv").write_text(
        "class,precision,recall,f1,support\n" + "".join(f"{d},1,1,1,3\n" for d in DIGITS)
    )
    commit("before the class list")
    write_reports(repo, {"accuracy": 0.9}, DIGITS)
    assert gate.main(["--baseline-rev", "HEAD"]) == 1
    assert "against revision HEAD, trained for the same 10 classes" in capsys.readouterr().out
    # Without it either, the revision names no classes: said, and judged alone.
    (repo / "reports/eval/class_report.csv").unlink()
    write_reports(repo, {"accuracy": 0.99}, None)
    commit("no class list at all")
    write_reports(repo, {"accuracy": 0.9}, DIGITS)
    assert gate.main(["--baseline-rev", "HEAD"]) == 0
    assert "revision HEAD names no classes" in capsys.readouterr().out


def test_cli_with_a_baseline_file(repo, tmp_path, capsys):
    write_reports(repo, {"accuracy": 0.9}, DIGITS)
    other = tmp_path / "old"
    write_reports(other, {"accuracy": 0.99}, DIGITS)
    assert gate.main(["--baseline", str(other / "reports/metrics.json")]) == 1
    write_reports(other, {"accuracy": 0.99}, SHAPES)
    assert gate.main(["--baseline", str(other / "reports/metrics.json")]) == 0
    assert "was trained for other classes" in capsys.readouterr().out


def test_an_unknown_baseline_revision_fails_instead_of_skipping(repo, capsys):
    write_reports(repo, {"accuracy": 0.99}, DIGITS)
    commit("x")
    assert gate.main(["--baseline-rev", "0123456789abcdef0123456789abcdef01234567"]) == 1
    out = capsys.readouterr().out
    assert "FAIL: baseline revision" in out and "not found" in out
    # A commit without a metrics file is the first model: no baseline, not an error.
    (repo / "reports/metrics.json").rename(repo / "m.json")
    subprocess.run(["git", "rm", "-q", "--cached", "reports/metrics.json"], check=True)
    git("commit", "-qm", "y")
    (repo / "m.json").rename(repo / "reports/metrics.json")
    assert gate.main(["--baseline-rev", "HEAD"]) == 0
    assert "revision HEAD has no reports/metrics.json (the first model)" in (
        capsys.readouterr().out
    )


def test_an_invalid_params_file_exits_2(repo, capsys):
    (repo / "params.yaml").write_text("gate:\n  min_valu: 0.5\n")
    assert gate.main([]) == 2
    assert "gate.min_valu: unknown key" in capsys.readouterr().err
