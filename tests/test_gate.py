import json
import subprocess

from image_classifier import gate
from image_classifier.params import GateParams

GATE = GateParams(metric="accuracy", min_value=0.9, max_drop=0.01)


def test_passes_above_minimum_without_baseline():
    verdict = gate.judge({"accuracy": 0.95}, None, GATE)
    assert verdict.passed and "no baseline" in verdict.lines[-1]


def test_fails_below_minimum():
    verdict = gate.judge({"accuracy": 0.85}, {"accuracy": 0.85}, GATE)
    assert not verdict.passed and verdict.lines[0].startswith("FAIL: accuracy = 0.8500")


def test_fails_on_a_drop_larger_than_the_tolerance():
    assert gate.judge({"accuracy": 0.985}, {"accuracy": 0.99}, GATE).passed
    verdict = gate.judge({"accuracy": 0.97}, {"accuracy": 0.99}, GATE)
    assert not verdict.passed and "largest allowed drop 0.0100" in verdict.lines[-1]


def test_refuses_a_network_that_does_not_beat_the_linear_baseline_by_the_margin():
    metrics = {"accuracy": 0.96, "baseline_linear_accuracy": 0.95}
    assert gate.judge(metrics, None, GATE, margin=0.01).passed
    verdict = gate.judge(metrics, None, GATE, margin=0.02)
    assert not verdict.passed
    assert verdict.lines[1] == (
        "FAIL: accuracy 0.9600 vs linear baseline 0.9500 "
        "(must beat it by evaluate.baseline_margin = 0.0200)"
    )


def test_near_the_ceiling_half_the_headroom_is_enough():
    metrics = {"accuracy": 1.0, "baseline_linear_accuracy": 1.0}
    assert gate.judge(metrics, None, GATE, margin=0.02).passed
    # baseline 0.985 + 0.02 would demand more than 1.0; half the headroom asks 0.9925
    assert gate.judge(
        {"accuracy": 0.995, "baseline_linear_accuracy": 0.985}, None, GATE, 0.02
    ).passed
    assert not gate.judge(
        {"accuracy": 0.99, "baseline_linear_accuracy": 0.985}, None, GATE, 0.02
    ).passed


def test_the_baseline_check_uses_the_gate_metric():
    gate_f1 = GateParams(metric="f1_macro", min_value=0.5, max_drop=0.01)
    metrics = {"f1_macro": 0.7, "baseline_linear_f1_macro": 0.8, "accuracy": 0.99}
    verdict = gate.judge(metrics, None, gate_f1, margin=0.0)
    assert not verdict.passed and "vs linear baseline 0.8000" in verdict.lines[1]


def test_unknown_metric_fails_clearly():
    verdict = gate.judge({"f1_macro": 0.99}, None, GATE)
    assert not verdict.passed and "'accuracy' is not in the metrics" in verdict.lines[0]


def test_cli_against_a_git_baseline(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text("gate:\n  min_value: 0.5\n  max_drop: 0.02\n")
    (tmp_path / "reports").mkdir()
    metrics = tmp_path / "reports/metrics.json"
    metrics.write_text(json.dumps({"accuracy": 0.99}))
    for cmd in (
        ["init", "-q"],
        ["add", "-A"],
        ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "base"],
    ):
        subprocess.run(["git", *cmd], check=True)
    metrics.write_text(json.dumps({"accuracy": 0.98}))
    assert gate.main(["--baseline-rev", "HEAD"]) == 0
    metrics.write_text(json.dumps({"accuracy": 0.90}))
    assert gate.main(["--baseline-rev", "HEAD"]) == 1
    out = capsys.readouterr().out
    assert "0.9900 -> 0.9000" in out and "quality gate FAILED" in out
    metrics.unlink()
    assert gate.main([]) == 1


def test_an_unknown_baseline_revision_fails_instead_of_skipping(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text("gate:\n  min_value: 0.5\n")
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports/metrics.json").write_text(json.dumps({"accuracy": 0.99}))
    subprocess.run(["git", "init", "-q"], check=True)
    subprocess.run(["git", "add", "-A"], check=True)
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x"], check=True
    )
    assert gate.main(["--baseline-rev", "0123456789abcdef0123456789abcdef01234567"]) == 1
    out = capsys.readouterr().out
    assert "FAIL: baseline revision" in out and "not found" in out
    # A commit without a metrics file is the first model: no baseline, not an error.
    (tmp_path / "reports/metrics.json").rename(tmp_path / "m.json")
    subprocess.run(["git", "rm", "-q", "--cached", "reports/metrics.json"], check=True)
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "y"], check=True
    )
    (tmp_path / "m.json").rename(tmp_path / "reports/metrics.json")
    assert gate.main(["--baseline-rev", "HEAD"]) == 0
    assert "no baseline metrics" in capsys.readouterr().out
