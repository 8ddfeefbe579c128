"""The commands print one line for the user errors they can explain, and let anything else,
a bug of ours, surface with its traceback."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import pytest

from image_classifier import cli, drift, pack
from image_classifier import feedback as feedback_cli
from image_classifier.errors import MissingFileError
from image_classifier.params import Params


def reference(tmp_path):
    path = tmp_path / "predictions.csv"
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "actual", "predicted", "confidence"])
        writer.writerows([(f"{i}.png", "a", "a", 0.9) for i in range(10)])
    return path


def test_a_stage_explains_a_missing_file_it_names_and_shows_a_bug(monkeypatch, caplog):
    monkeypatch.setattr(cli, "load_params", lambda: Params())

    def missing(params):
        raise MissingFileError("data/split/train.csv not found: run the split stage first")

    with caplog.at_level(logging.ERROR), pytest.raises(SystemExit) as stopped:
        cli.run_stage(missing)
    assert stopped.value.code == 1 and "run the split stage first" in caplog.text

    def bug(params):
        Path("a path our own code got wrong").read_bytes()

    with pytest.raises(FileNotFoundError):  # the traceback, not one line
        cli.run_stage(bug)


def test_drift_explains_its_inputs_and_shows_a_bug(tmp_path, monkeypatch, capsys):
    (tmp_path / "params.yaml").write_text("drift:\n  min_samples: 1\n")
    args = [
        *("--reference", str(reference(tmp_path)), "--version", "v1"),
        *("--params", str(tmp_path / "params.yaml"), "--model-card", str(tmp_path / "no.json")),
    ]
    missing = ["--db", str(tmp_path / "none.sqlite"), *args]
    assert drift.main(missing) == 2
    assert "no drift database" in capsys.readouterr().err
    unreachable = ["--url", "http://127.0.0.1:9", *args]  # nothing listens on the discard port
    assert drift.main(unreachable) == 2
    assert "drift: http://127.0.0.1:9/api/v1/drift" in capsys.readouterr().err

    def bug(*_):
        raise KeyError("a bug in compare")

    monkeypatch.setattr(drift, "compare", bug)
    monkeypatch.setattr(drift, "read_profile", lambda target, version: drift.Profile())
    with pytest.raises(KeyError, match="a bug in compare"):
        drift.main(["--db", str(tmp_path / "any.sqlite"), *args])


def test_feedback_export_explains_its_inputs_and_shows_a_bug(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("FEEDBACK_TOKEN", raising=False)
    out = str(tmp_path / "raw")
    (tmp_path / "params.yaml").write_text("serve:\n  database: ''\n")
    assert feedback_cli.main(["export", "--to", out, "--url", "https://example.org"]) == 2
    assert "FEEDBACK_TOKEN" in capsys.readouterr().err
    db = ["--db", str(tmp_path / "x.sqlite"), "--params", str(tmp_path / "params.yaml")]
    assert feedback_cli.main(["export", "--to", out, *db]) == 2
    assert "no feedback database" in capsys.readouterr().err

    def bug(*_):
        raise ValueError("a bug in export")

    monkeypatch.setenv("FEEDBACK_TOKEN", "t")
    monkeypatch.setattr(feedback_cli.AppSource, "items", lambda self: iter(()))
    monkeypatch.setattr(feedback_cli, "export", bug)
    with pytest.raises(ValueError, match="a bug in export"):
        feedback_cli.main(["export", "--to", out, "--url", "https://example.org"])


def test_pack_explains_its_inputs_and_shows_a_bug(tmp_path, monkeypatch, caplog):
    source = tmp_path / "images"
    source.mkdir()
    with caplog.at_level(logging.ERROR), pytest.raises(SystemExit):
        pack.main([str(source), str(tmp_path / "out")])
    assert f"image folder {source}" in caplog.text  # empty: one line says so

    def bug(*_):
        raise ValueError("a bug in pack")

    monkeypatch.setattr(pack, "pack", bug)
    with pytest.raises(ValueError, match="a bug in pack"):
        pack.main([str(source), str(tmp_path / "out")])
