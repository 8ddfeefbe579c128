"""The audit's from-scratch path: out-of-sample probabilities from networks trained without
the image's fold (training/cross_fit.py), and the stage choosing it."""

from __future__ import annotations

import contextlib
import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from image_classifier.evaluation import label_issues
from image_classifier.params import parse_params
from image_classifier.training import cross_fit
from image_classifier.training.input_pipeline import ArraySource

from conftest import png
from fork import params_dict


def test_pooled_reads_the_sources_as_one_in_the_order_asked():
    a = ArraySource(np.arange(5)[:, None, None, None] * np.ones((1, 2, 2, 1)), np.zeros(5))
    b = ArraySource(np.arange(5, 8)[:, None, None, None] * np.ones((1, 2, 2, 1)), np.ones(3))
    pooled = cross_fit.Pooled([a, b])
    assert len(pooled) == 8 and pooled.labels.tolist() == [0] * 5 + [1] * 3
    for asked in ([0, 4, 5, 7], [6, 1, 5, 0], [7], [2, 3]):
        assert pooled.read(np.array(asked))[:, 0, 0, 0].tolist() == asked
    sub = cross_fit.Subset(pooled, np.array([1, 4, 6]))
    assert sub.labels.tolist() == [0, 0, 1]
    assert sub.read(np.array([0, 2]))[:, 0, 0, 0].tolist() == [1, 6]


def test_folds_are_stratified_seeded_and_cover_every_image_once():
    labels = np.repeat(np.arange(3), [10, 7, 5])
    fold = label_issues.fold_of(labels, folds=5, seed=0)
    assert np.array_equal(fold, label_issues.fold_of(labels, folds=5, seed=0))
    assert sorted(set(fold.tolist())) == [0, 1, 2, 3, 4]
    for k in range(5):  # each class spread over the folds (StratifiedKFold)
        assert np.bincount(labels[fold == k], minlength=3).min() >= 1
    assert not np.array_equal(fold, label_issues.fold_of(labels, folds=5, seed=1))
    with pytest.raises(label_issues.TooSmallError, match="2 image"):
        label_issues.fold_of(np.array([0, 0, 1, 1, 1]), folds=5, seed=0)


def test_no_network_sees_the_images_it_predicts(monkeypatch):
    """Each network trains on neither its held-out fold nor its validation fold, and only the
    held-out fold's probabilities come from it."""
    import image_classifier.training.fit_loop as fit_loop

    labels = np.repeat(np.arange(3), 8)
    x = np.arange(24, dtype=np.uint8)[:, None, None, None] * np.ones((1, 4, 4, 1), np.uint8)
    images = ArraySource(x, labels)
    params = parse_params({"image": {"size": 8, "color_mode": "grayscale"}})
    fold = label_issues.fold_of(labels, 4, params.train.seed)
    seen = []

    class Recorder:
        """A network whose every prediction is the index of the network that made it."""

        def __init__(self, k: int) -> None:
            self.k = k

        def predict_on_batch(self, batch: np.ndarray) -> np.ndarray:
            return np.full((len(batch), 3), float(self.k), dtype=np.float32)

    def fake_fit(params, train, val, classes, live=None, kept=None):
        assert params.train.init_from is None and params.train.distribute == "none"
        seen.append((train.read(np.arange(len(train)))[:, 0, 0, 0].tolist(),
                     val.read(np.arange(len(val)))[:, 0, 0, 0].tolist()))  # fmt: skip
        return Recorder(len(seen) - 1)

    monkeypatch.setattr(fit_loop, "fit", fake_fit)
    probs = cross_fit.out_of_sample_probs(params, images, ["a", "b", "c"], folds=4)
    assert len(seen) == 4
    for k, (trained, validated) in enumerate(seen):
        held = set(np.flatnonzero(fold == k).tolist())
        assert held.isdisjoint(trained) and held.isdisjoint(validated)
        assert set(validated) == set(np.flatnonzero(fold == (k + 1) % 4).tolist())
        assert len(trained) + len(validated) + len(held) == 24
    assert np.array_equal(probs[:, 0], fold.astype(np.float32))  # each from its fold's network


def test_networks_trained_without_the_label_flag_the_flipped_ones():
    """Real training: two classes a network tells apart at once (dark and bright images);
    a flipped image's given label gets a low out-of-sample probability."""
    rng = np.random.default_rng(0)
    truth = np.repeat([0, 1], 30)
    x = (truth[:, None, None, None] * 180 + rng.integers(0, 60, (60, 8, 8, 1))).astype(np.uint8)
    given = truth.copy()
    flipped = np.array([3, 17, 41, 50])
    given[flipped] = 1 - given[flipped]
    params = parse_params(
        {
            "image": {"size": 8, "color_mode": "grayscale"},
            "train": {"epochs": 8, "min_steps": 0, "learning_rate": 0.01},
        }
    )
    probs = cross_fit.out_of_sample_probs(params, ArraySource(x, given), ["dark", "bright"], 3)
    assert np.array_equal(probs.argmax(axis=1), truth)
    found = label_issues.label_issues(probs, given, [str(i) for i in range(60)], ["d", "b"])
    assert {int(i.path) for i in found} == set(flipped.tolist())


@pytest.mark.parametrize("retrain_up_to", [20000, 10])
def test_the_stage_trains_networks_from_scratch_up_to_retrain_up_to(
    retrain_up_to, tmp_path, monkeypatch
):
    """The stages as `dvc repro` runs them, on class folders of dark and bright images with
    four files in the wrong folder: from scratch, the audit trains audit.folds networks and
    flags those files among the images it sees; past audit.retrain_up_to it takes the trained
    network's own features instead (summary `probabilities`). The end-to-end tests set
    audit.retrain_up_to: 0 for time: this is where the default path runs whole."""
    from image_classifier import audit, prepare, split, train

    rng = np.random.default_rng(0)
    moved = {("dark", 3), ("dark", 11), ("bright", 5), ("bright", 16)}
    for name, level in (("dark", 0), ("bright", 180)):
        for i in range(40):
            pixels = (level + rng.integers(0, 60, (8, 8))).astype(np.uint8)
            folder = (
                tmp_path
                / "data"
                / "raw"
                / (({"dark", "bright"} - {name}).pop() if (name, i) in moved else name)
            )
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{name}_{i:02d}.png").write_bytes(png(Image.fromarray(pixels)))
    raw = {
        "image": {"size": 8, "color_mode": "grayscale"},
        "train": {"epochs": 20, "min_steps": 0},
        "audit": {"folds": 3, "retrain_up_to": retrain_up_to},
    }
    params = parse_params(params_dict(raw))
    with contextlib.chdir(tmp_path):
        split.run(params)
        prepare.run(params, workers=1)
        train.run(params)
        summary = audit.run(params)
        with Path("reports/audit/issues.csv").open(encoding="utf-8") as fh:
            flagged = {r["path"] for r in csv.DictReader(fh) if r["kind"] == "label"}
        seen = set()
        for s in ("train", "val"):
            with Path(f"data/splits/{s}.csv").open(encoding="utf-8") as fh:
                seen |= {r["path"] for r in csv.DictReader(fh)}
    assert summary["probabilities"] == ("networks" if retrain_up_to > 10 else "features")
    wrong = {p for p in seen if any(p.endswith(f"{n}_{i:02d}.png") for n, i in moved)}
    if retrain_up_to > 10:  # issue 37's targets: precision 0.8, recall 0.7 (here 1.0 and 0.75)
        assert flagged <= wrong and len(flagged) >= 0.7 * len(wrong) > 0, (flagged, wrong)
