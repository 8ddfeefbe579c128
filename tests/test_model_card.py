"""reports/model_card.md: every number in its metric sections is metrics.json's (or, per
out-of-distribution set, reports/eval/ood.json's), and its front matter is a Hugging Face
model-index of the same values."""

from __future__ import annotations

import dataclasses
import json

import pytest

from image_classifier.evaluation import model_card

from helpers import check_card, split_card


def test_every_number_in_the_card_is_metrics_json(reports_dir):
    """The card the evaluate stage wrote for the tiny model."""
    text = (reports_dir / "model_card.md").read_text(encoding="utf-8")
    scores = json.loads((reports_dir / "metrics.json").read_text())
    sets = json.loads((reports_dir / "eval/ood.json").read_text())["sets"]
    checked = check_card(text, scores, sets)
    # the metrics with their baselines, calibration, the detector and each set: all there
    assert checked >= 60, checked
    _, sections = split_card(text)
    for title in ("Model details", "Intended use", "Out-of-scope use", "Classes", "Label audit",
                  "Known limitations", "Versions"):  # fmt: skip
        assert sections.get(title), title
    assert "| `cat` | 8 | 0 | 4 | 12 |" in sections["Classes"]
    assert any("`label_issues`" in line for line in sections["Label audit"])
    assert any("keras" in line for line in sections["Versions"])


def test_the_check_catches_a_changed_number_or_a_stray_one(reports_dir):
    """The check is no formality: one figure off, or a number in the prose, fails it."""
    text = (reports_dir / "model_card.md").read_text(encoding="utf-8")
    scores = json.loads((reports_dir / "metrics.json").read_text())
    sets = json.loads((reports_dir / "eval/ood.json").read_text())["sets"]
    shown = model_card.number(scores["ece"])
    wrong = scores | {"ece": scores["ece"] + 0.001}
    with pytest.raises(AssertionError):
        check_card(text, wrong, sets)
    row = f"| `ece` | {model_card.number(scores['ece_uncalibrated'])} | {shown} |"
    assert row in text
    with pytest.raises(AssertionError, match="a number in"):
        check_card(text.replace("## Calibration\n", "## Calibration\n\nECE 0.01\n"), scores, sets)


SCORES = {
    "accuracy": 0.8,
    "balanced_accuracy": 0.75,
    "f1_macro": 0.7,
    "n_test": 40,
    "top_2_accuracy": 0.95,
    "baseline_linear_accuracy": 0.82,
    "baseline_majority_accuracy": 0.5,
    "ece": 0.021,
    "ece_uncalibrated": 0.12,
    "log_loss": 0.51,
    "log_loss_uncalibrated": 0.93,
    "temperature": 1.7,
    "ood_threshold": -12.5,
    "test_rejected": 0.05,
    "accuracy_known": 0.82,
}
MODEL = {
    "version": "abc-123",
    "classes": ["cat", "dog", "fox"],
    "architecture": "simple_cnn",
    "input": {"size": 32, "color_mode": "rgb", "channels": 3},
    "preprocessing_version": 2,
    "quantization": "int8",
    "ood": {"method": "knn", "threshold": -12.5, "accept": 0.9},
}
COUNTS = {"train": {"cat": 100, "dog": 90, "fox": 12}, "val": {"cat": 20, "dog": 18, "fox": 3},
          "test": {"cat": 20, "dog": 18, "fox": 2}}  # fmt: skip


def test_a_card_without_ood_sets_and_a_refused_model():
    """No out-of-distribution sets: said so, and no such figure made up. A model the gate
    refuses: the limitation first, with the fit's diagnosis; a small class named."""
    facts = model_card.CardFacts(
        model=MODEL,
        counts=COUNTS,
        refused=True,
        diagnosis={"case": "overfitting", "advice": "regularise: add images"},
    )
    text = model_card.render(SCORES, facts)
    assert check_card(text, SCORES, {}) >= 15
    _, sections = split_card(text)
    ood = "\n".join(sections["Out-of-distribution behaviour"])
    assert "`ood.sets` in params.yaml is empty" in ood and "ood_auroc" not in ood
    limits = sections["Known limitations"]
    assert "quality gate refuses it" in limits[1] and "overfitting" in limits[1]
    assert "regularise: add images" in limits[1]
    assert any("Small classes" in line and "`fox`" in line for line in limits)
    assert any("not measured" in line for line in limits)
    assert not any("`accuracy_known`" in line for line in limits)  # 0.82 >= 0.8
    worse = model_card.render(SCORES | {"accuracy_known": 0.79}, facts)
    limits = split_card(worse)[1]["Known limitations"]
    assert any("is below the accuracy on all of them" in line for line in limits)
    assert "The audit stage's report (reports/audit/summary.json) was not found." in text
    uses = "\n".join(sections["Out-of-scope use"])
    assert "validation images to accept 90 % of them: so about 10 %" in uses
    sure = dataclasses.replace(facts, model=MODEL | {"ood": MODEL["ood"] | {"confidence": 0.8}})
    uses = "\n".join(split_card(model_card.render(SCORES, sure))[1]["Out-of-scope use"])
    assert "accept at least 90 % of images like them (with 80 % confidence): so up to 10 %" in uses
    assert "| `top_2_accuracy` | 0.9500 | – | – |" in text
    assert "| `accuracy` | 0.8000 | 0.8200 | 0.5000 |" in text


def test_small_classes_and_number_formatting():
    assert model_card.small_classes(COUNTS) == ["fox"]
    big = {"train": {"a": 1000, "b": 1000, "c": 150}}  # 150 < 0.2 * 1000
    assert model_card.small_classes(big) == ["c"]
    assert model_card.number(269) == "269"
    assert model_card.number(1 / 3) == "0.3333"
    assert model_card.number(-257.53387) == "-257.5339"
    assert model_card.number(None) == model_card.number(float("nan")) == "–"
