"""The evaluate stage refuses a model whose classes are not the store's, in the same order: its
outputs would be scored against the wrong labels. The error names both lists, the stage shell
prints it as one line, and no report is written."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest

from image_classifier import cli, config, evaluate, prepare, split
from image_classifier.params import parse_params

from conftest import pattern, png
from fork import params_dict

STORE_CLASSES = ["cat", "crème brûlée", "dog"]  # as model_dir's model was trained on
PARAMS = parse_params(params_dict({"image": {"size": 12, "color_mode": "grayscale"}}))


@pytest.fixture
def workspace(model_dir, tmp_path, monkeypatch) -> Path:
    """A prepared store of model_dir's classes at its size, and model_dir's model in
    saved_models/; each test changes the model card's classes."""
    monkeypatch.chdir(tmp_path)
    for label, name in enumerate(STORE_CLASSES):
        folder = tmp_path / "data" / "raw" / name
        folder.mkdir(parents=True)
        for i in range(10):
            (folder / f"{i:02d}.png").write_bytes(png(pattern(label, i)))
    split.run(PARAMS)
    prepare.run(PARAMS, workers=1)
    shutil.copytree(model_dir, config.MODELS_DIR)
    return tmp_path


def card_classes(classes: list[str]) -> None:
    card = json.loads(config.MODEL_CARD.read_text(encoding="utf-8"))
    card["classes"] = classes
    config.MODEL_CARD.write_text(json.dumps(card), encoding="utf-8")


@pytest.mark.parametrize(
    "model_classes",
    [
        ["bird", "cat", "dog"],  # another task
        ["dog", "cat", "crème brûlée"],  # the same names, another output order
        ["cat", "crème brûlée"],  # a class fewer
    ],
)
def test_evaluate_refuses_a_model_of_other_classes_naming_both(
    workspace, monkeypatch, caplog, model_classes
):
    card_classes(model_classes)
    expected = (
        f"{config.MODEL_CARD} names classes {model_classes}, the store {STORE_CLASSES}: "
        "re-run the pipeline (dvc repro)"
    )
    with pytest.raises(cli.StageError) as raised:
        evaluate.run(PARAMS)
    assert str(raised.value) == expected
    assert not config.METRICS_FILE.exists() and not config.EVAL_DIR.exists()

    # As the stage runs: that one line, no traceback, exit status 1.
    monkeypatch.setattr(cli, "load_params", lambda: PARAMS)
    with caplog.at_level(logging.ERROR), pytest.raises(SystemExit) as stopped:
        cli.run_stage(evaluate.run)
    assert stopped.value.code == 1
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [r.getMessage() for r in errors] == [expected]
    assert all(r.exc_info is None for r in errors)


def test_the_same_classes_in_the_same_order_pass_the_check(workspace):
    """The control: with the store's classes the stage gets past the check, to the next
    thing this workspace lacks (export's test probabilities)."""
    card_classes(STORE_CLASSES)
    with pytest.raises(cli.StageError, match=r"test_probabilities\.npz not found: run the export"):
        evaluate.run(PARAMS)
