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
    assert not verdict.passed and "largest allowed drop 0.0100" in verdict.lines[1]


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
