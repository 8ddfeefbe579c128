"""The training schedule: budget for small data, class weights, the saved (best) weights and
what DVC reports about them, and transfer learning in two phases."""

import json

import keras
import numpy as np
import pytest
from dvclive import Live

from image_classifier.evaluation import metrics
from image_classifier.params import ParamsError, TrainParams, parse_params
from image_classifier.training import fit_loop, lr_find, models
from image_classifier.training.input_pipeline import ArraySource

from helpers import CLASSES, colours


@pytest.mark.parametrize(
    ("n_train", "params", "expected"),
    [
        # 85 images at batch 32 would be 3 steps an epoch: capped to 10 (9 steps), and at
        # least 300 steps (34 epochs) before early stopping may end training.
        (
            85,
            TrainParams(batch_size=32, epochs=40, min_steps=300),
            fit_loop.Budget(10, 9, 9, 40, 34),
        ),
        # auto: 30 epochs, raised to the 34 the minimum budget needs
        (
            85,
            TrainParams(batch_size=32, epochs="auto", min_steps=300),
            fit_loop.Budget(10, 9, 9, 34, 34),
        ),
        (
            85,
            TrainParams(batch_size=32, epochs="auto", min_steps=90),
            fit_loop.Budget(10, 9, 9, 30, 10),
        ),
        # a number is what runs: 10 epochs, early stopping held back through all of them
        (
            85,
            TrainParams(batch_size=32, epochs=10, min_steps=300),
            fit_loop.Budget(10, 9, 9, 10, 10),
        ),
        # 313 steps an epoch become 320: 20 whole calls of 16; the default 500 steps are 2.
        (10_000, TrainParams(batch_size=32, epochs=5), fit_loop.Budget(32, 320, 16, 5, 2)),
        # 448 steps an epoch (20,000 photos' training split at batch 32) and 1 epoch set: 1
        # runs, not the 2 that the default 500 steps would need
        (14_336, TrainParams(batch_size=32, epochs=1), fit_loop.Budget(32, 448, 16, 1, 1)),
        (5, TrainParams(batch_size=64, epochs=3, min_steps=0), fit_loop.Budget(1, 5, 5, 3, 0)),
    ],
)
def test_training_budget_adapts_to_the_dataset_size(n_train, params, expected):
    assert fit_loop.training_budget(n_train, params) == expected


def test_the_budget_is_the_number_of_optimizer_steps_taken():
    raw = {"image": {"size": 8, "color_mode": "rgb"}}
    raw["train"] = {"epochs": 3, "min_steps": 0, "batch_size": 2, "early_stopping_patience": 9}
    params = parse_params(raw)
    data = colours(6, 8, 0)  # 18 images at batch 2: 9 steps an epoch, 9 per call
    model = fit_loop.fit(params, data, colours(2, 8, 1), CLASSES)
    budget = fit_loop.training_budget(len(data), params.train)
    assert int(model.optimizer.iterations.numpy()) == 3 * budget.steps_per_epoch == 27


def test_a_number_of_epochs_is_what_runs_whatever_the_minimum_budget(caplog):
    """train.epochs: 2 with train.min_steps far above 2 epochs' steps: 2 epochs run."""
    raw = {"image": {"size": 8, "color_mode": "rgb"}}
    raw["train"] = {"epochs": 2, "min_steps": 1000, "batch_size": 2}
    params = parse_params(raw)
    data = colours(6, 8, 0)  # 9 steps an epoch
    with caplog.at_level("INFO", logger="image_classifier.training.fit_loop"):
        model = fit_loop.fit(params, data, colours(2, 8, 1), CLASSES)
    assert int(model.optimizer.iterations.numpy()) == 2 * 9
    assert "up to 2 epochs (train.epochs;" in caplog.text


def test_balanced_class_weights():
    # scikit-learn's n / (classes * count), over the classes train holds; none for the third.
    weights = fit_loop.class_weights(np.array([0] * 8 + [1] * 2), 3)
    assert weights == {0: 10 / (2 * 8), 1: 10 / (2 * 2), 2: 0.0}


def test_class_weight_balanced_reaches_keras_fit(monkeypatch):
    seen = []
    original = keras.Model.fit

    def spy(self, *args, **kwargs):
        seen.append(kwargs.get("class_weight"))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "fit", spy)
    raw = {"image": {"size": 8, "color_mode": "rgb"}}
    raw["train"] = {"epochs": 1, "min_steps": 0, "class_weight": "balanced"}
    data = ArraySource(colours(6, 8, 0).x[:14], np.array([0] * 10 + [1] * 2 + [2] * 2))
    fit_loop.fit(parse_params(raw), data, colours(2, 8, 1), CLASSES)
    assert seen == [{0: 14 / 30, 1: 14 / 6, 2: 14 / 6}]


def overlapping(counts: tuple[int, int], seed: int) -> ArraySource:
    """Two classes whose colours overlap: each image's redness is drawn around -18 (class 0)
    or +18 (class 1), spread 24. No model tells every image apart, so the class balance of
    the training data decides where the boundary falls."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(2), counts)
    red = rng.normal(np.where(y == 1, 18.0, -18.0), 24.0)
    colour = np.stack([128 + red, 128 - red, np.full_like(red, 128)], axis=1)
    x = colour[:, None, None, :] + rng.normal(0, 10, (len(y), 8, 8, 3))
    return ArraySource(np.clip(x, 0, 255).astype(np.uint8), y)


def test_class_weight_balanced_lifts_the_minority_class_at_20_to_1():
    """Trained on 20:1, plain training all but gives up the minority class; balanced weights
    recover it. Seeded; balanced accuracy on balanced held-out data (seeds 0-3 and 42, 5 and
    8 epochs: none 0.50-0.58, balanced 0.71-0.77)."""
    train, test = overlapping((400, 20), 0), overlapping((300, 300), 2)
    # Balanced too: the kept epoch (lowest validation loss) would otherwise be the one that
    # best ignores the minority class.
    val = overlapping((40, 40), 1)
    scores = {}
    for weighting in ("none", "balanced"):
        raw = {"image": {"size": 8, "color_mode": "rgb"}}
        raw["train"] = {"epochs": 8, "min_steps": 0, "class_weight": weighting, "seed": 42}
        raw["train"]["learning_rate"] = 0.003  # the figures above; one rate for both arms
        model = fit_loop.fit(parse_params(raw), train, val, ["red", "green"])
        probs = model.predict(test.x.astype(np.float32), verbose=0)
        scores[weighting] = metrics.compute_metrics(test.labels, probs, 2)["balanced_accuracy"]
    assert scores["balanced"] >= scores["none"] + 0.1, scores
    assert scores["balanced"] >= 0.65, scores


def test_reported_training_metrics_are_those_of_the_saved_weights(tmp_path):
    """Early stopping restores the best epoch; metrics.json must describe that epoch."""
    raw = {"image": {"size": 8, "color_mode": "rgb"}}
    # A learning rate this high makes the validation loss jump about, so the best epoch is
    # rarely the last: the case where reporting the last epoch misleads.
    raw["train"] = {"epochs": 8, "min_steps": 0, "learning_rate": 0.05, "batch_size": 4}
    val = colours(3, 8, 1)
    with Live(dir=str(tmp_path), dvcyaml=None, save_dvc_exp=False) as live:
        model = fit_loop.fit(parse_params(raw), colours(8, 8, 0), val, CLASSES, live)
    summary = json.loads((tmp_path / "metrics.json").read_text())
    history = {
        name: [float(line.split("\t")[-1]) for line in path.read_text().splitlines()[1:]]
        for name, path in [
            ("val_loss", tmp_path / "plots/metrics/eval/loss.tsv"),
            ("loss", tmp_path / "plots/metrics/train/loss.tsv"),
        ]
    }
    best = int(np.argmin(history["val_loss"]))
    assert summary["best_step"] == best
    assert summary["eval"]["loss"] == pytest.approx(history["val_loss"][best])
    assert summary["train"]["loss"] == pytest.approx(history["loss"][best])
    # ... and the returned model really holds that epoch's weights.
    loss = model.evaluate(val.x.astype(np.float32), val.labels, verbose=0)[0]
    assert loss == pytest.approx(summary["eval"]["loss"], rel=1e-4)


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    """A 'pretrained' MobileNetV2 base saved to a local file (random weights: offline)."""
    keras.utils.set_random_seed(0)
    base = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(32, 32, 3))
    path = tmp_path_factory.mktemp("weights") / "base.weights.h5"
    base.save_weights(path)
    return path, base


def _layer_changes(model: keras.Model, reference: keras.Model) -> dict[str, bool]:
    """Which of the base's layers hold weights different from the reference (a base, or a
    model holding one)."""
    base = models.find_base(model)
    reference = models.find_base(reference) or reference
    return {
        layer.name: any(
            not np.array_equal(a, b)
            for a, b in zip(
                layer.get_weights(), reference.get_layer(layer.name).get_weights(), strict=True
            )
        )
        for layer in base.layers
        if layer.weights
    }


def _transfer(**train_params):
    raw = {"image": {"size": 32, "color_mode": "rgb"}}
    raw["train"] = {
        "model": "mobilenet_v2",
        "epochs": 1,
        "fine_tune_epochs": 1,
        "min_steps": 0,
        "batch_size": 8,
        **train_params,
    }
    return parse_params(raw)


@pytest.fixture
def last_weights(monkeypatch):
    """Fits end on the weights phase 2 ended with, whichever epoch validated best: on these
    few images both phases' validation losses are ln 3 to float rounding, and KeepBest would
    pick one by noise."""
    monkeypatch.setattr(fit_loop.KeepBest, "restore", lambda self: None)


def scripted_val_losses(monkeypatch, losses: list[float]) -> list[dict[str, list]]:
    """KeepBest is shown `losses` as the validation losses of the epochs of both phases, in
    order (the real ones are ln 3 to float rounding here, so which is lowest would be noise);
    its choosing and restoring are its own. Returns, per epoch, the weights of each layer of
    the model being fitted (phase 1 on LiteRT fits the head alone) as the epoch ended them."""
    ended: list[dict[str, list]] = []
    on_epoch_end = fit_loop.KeepBest.on_epoch_end

    def scripted(self, epoch, logs=None):
        on_epoch_end(self, epoch, {**(logs or {}), "val_loss": losses[self.epoch + 1]})
        ended.append({la.name: la.get_weights() for la in self.model.layers if la.weights})

    monkeypatch.setattr(fit_loop.KeepBest, "on_epoch_end", scripted)
    return ended


@pytest.mark.parametrize(
    ("losses", "best"),
    [
        # Phase 1's first epoch: phase 2 never does better, so the model ends on phase 1's
        # head and the base as loaded, not on phase 2's last (or best) epoch.
        ([0.5, 0.9, 0.7, 0.8], 0),
        # Phase 2's first epoch, not its last.
        ([0.9, 0.5, 0.3, 0.8], 2),
    ],
)
def test_the_model_keeps_the_best_epoch_of_both_phases(weights_file, monkeypatch, losses, best):
    path, reference = weights_file
    ended = scripted_val_losses(monkeypatch, losses)
    params = _transfer(weights=str(path), epochs=2, fine_tune_epochs=2, fine_tune_layers=3)
    model = fit_loop.fit(params, colours(8, 32, 0), colours(2, 32, 1), CLASSES)
    assert len(ended) == len(losses)
    kept = ended[best]
    base = models.find_base(model)
    assert ("probabilities" in kept) and ((base.name in kept) is (best >= 2))
    for name, weights in kept.items():
        got = model.get_layer(name).get_weights()
        assert len(got) == len(weights), name
        assert all(np.array_equal(a, b) for a, b in zip(got, weights, strict=True)), name
    if best < 2:  # phase 2's changes to the base are undone too
        assert not any(_layer_changes(model, reference).values())
    # ... and they are not what the last epoch ended with.
    last = ended[-1]["probabilities"]
    got = model.get_layer("probabilities").get_weights()
    assert not all(np.array_equal(a, b) for a, b in zip(got, last, strict=True))


def test_phase_two_fine_tunes_only_the_top_layers_at_its_own_rate(
    weights_file, monkeypatch, last_weights
):
    path, reference = weights_file
    rates = []
    compile_model = fit_loop.compile_model

    def spy(model, learning_rate, optimizer, steps_per_execution):
        rates.append(learning_rate)
        compile_model(model, learning_rate, optimizer, steps_per_execution)

    monkeypatch.setattr(fit_loop, "compile_model", spy)
    # class_weight: Keras refuses it together with sample weights, so this also checks that
    # phase 2 gets (pixels, labels) batches, not phase 1's (pixels, labels, store indices).
    params = _transfer(
        weights=str(path), fine_tune_layers=3, fine_tune_learning_rate=1e-4, class_weight="balanced"
    )
    model = fit_loop.fit(params, colours(8, 32, 0), colours(2, 32, 1), CLASSES)
    # Phase 1 compiles the model, and on LiteRT also its head (frozen_base.py), at one rate.
    # `auto` (the default): a pretrained base's head trains at one documented rate.
    assert params.train.learning_rate == "auto"
    assert set(rates[:-1]) == {lr_find.PRETRAINED_HEAD_RATE} and rates[-1] == 1e-4
    changed = _layer_changes(model, reference)
    top3 = [layer.name for layer in models.tunable_layers(models.find_base(model))[-3:]]
    assert {name for name, c in changed.items() if c} == set(top3)  # BN statistics too: none


def test_no_phase_two_keeps_the_base_as_loaded(weights_file):
    path, reference = weights_file
    model = fit_loop.fit(
        _transfer(weights=str(path)), colours(8, 32, 0), colours(2, 32, 1), CLASSES
    )
    assert not any(_layer_changes(model, reference).values())


def test_init_from_honours_the_fine_tuning_settings(weights_file, tmp_path, last_weights):
    path, _ = weights_file
    start = fit_loop.fit(
        _transfer(weights=str(path)), colours(8, 32, 0), colours(2, 32, 1), CLASSES
    )
    start.save(tmp_path / "model.keras")
    (tmp_path / "classes.json").write_text(json.dumps(CLASSES))
    start = keras.models.load_model(tmp_path / "model.keras")
    data = colours(8, 32, 2), colours(2, 32, 3)
    init = {"weights": str(path), "init_from": str(tmp_path / "model.keras")}
    frozen = fit_loop.fit(_transfer(**init), *data, CLASSES)
    assert not any(_layer_changes(frozen, start).values())
    tuned = fit_loop.fit(_transfer(**init, fine_tune_layers=2), *data, CLASSES)
    top2 = [layer.name for layer in models.tunable_layers(models.find_base(tuned))[-2:]]
    assert {name for name, c in _layer_changes(tuned, start).items() if c} == set(top2)


def test_too_many_fine_tune_layers_fail_before_training(weights_file, monkeypatch):
    path, _ = weights_file
    monkeypatch.setattr(keras.Model, "fit", lambda *a, **k: pytest.fail("trained anyway"))
    with pytest.raises(ParamsError, match="has 52 layers with weights"):
        fit_loop.fit(
            _transfer(weights=str(path), fine_tune_layers=60), *[colours(2, 32, 0)] * 2, CLASSES
        )


def test_init_from_a_base_trained_from_scratch_keeps_training_it_whole(tmp_path):
    start = fit_loop.fit(_transfer(weights=None), colours(8, 32, 0), colours(2, 32, 1), CLASSES)
    start.save(tmp_path / "model.keras")
    (tmp_path / "classes.json").write_text(json.dumps(CLASSES))
    start = keras.models.load_model(tmp_path / "model.keras")
    params = _transfer(weights=None, init_from=str(tmp_path / "model.keras"))
    again = fit_loop.fit(params, colours(8, 32, 2), colours(2, 32, 3), CLASSES)
    assert any(_layer_changes(again, start).values())


@pytest.mark.parametrize("plateau_from", ["min_steps", "start"])
def test_plateau_cuts_and_the_best_epoch_wait_for_the_minimum_budget(plateau_from, tmp_path):
    """With patience 0 every epoch without a better validation loss cuts the rate. Under
    `min_steps` no cut comes, and no epoch is kept, before the minimum budget's last epoch."""
    raw = {"image": {"size": 8, "color_mode": "rgb"}}
    raw["train"] = {
        "epochs": 6,
        "batch_size": 4,
        "min_steps": 32,  # 4 epochs of 8 steps
        "early_stopping_patience": 10,
        "reduce_lr_patience": 0,
        "learning_rate": 0.05,
        "plateau_from": plateau_from,
    }
    # Validation labels rotated by one class: the better the fit, the worse the validation
    # loss, as on a small, noisy validation split at its worst.
    val = colours(3, 8, 1)
    val = ArraySource(val.x, (val.labels + 1) % 3)
    with Live(dir=str(tmp_path), dvcyaml=None, save_dvc_exp=False) as live:
        fit_loop.fit(parse_params(raw), colours(8, 8, 0), val, CLASSES, live)
    lines = (tmp_path / "plots/metrics/train/learning_rate.tsv").read_text().splitlines()[1:]
    rates = [float(line.split("\t")[-1]) for line in lines]
    best = json.loads((tmp_path / "metrics.json").read_text())["best_step"]
    if plateau_from == "min_steps":
        # A cut at the end of epoch 4 would show in the 5th rate logged.
        assert rates[:5] == [pytest.approx(0.05)] * 5 and best >= 3
    else:
        # Cuts within the minimum budget, and an early epoch kept.
        assert min(rates[:4]) < 0.05 and best < 3, (rates, best)
