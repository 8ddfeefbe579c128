from pathlib import Path

import pytest

from image_classifier.params import (
    Params,
    ParamsError,
    load_params,
    parse_params,
    reference,
    reference_markdown,
)

ROOT = Path(__file__).resolve().parents[1]


def test_repository_params_yaml_passes_its_checks():
    """The repository's params.yaml is its user's: whatever it holds must load, nothing more."""
    load_params(ROOT / "params.yaml")


def test_empty_mapping_gives_defaults():
    assert parse_params({}) == Params()


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ({"train": {"learning_rte": 0.1}}, "train.learning_rte: unknown key"),
        ({"train": {"learning_rte": 0.1}}, "did you mean 'learning_rate'"),
        ({"trian": {}}, "trian: unknown key"),
        ({"train": {"epochs": "ten"}}, "train.epochs: must be an integer"),
        ({"train": {"epochs": True}}, "train.epochs: must be an integer"),
        ({"train": {"epochs": 0}}, "train.epochs: must be >= 1"),
        ({"train": {"learning_rate": -1}}, "train.learning_rate: must be > 0 or 'auto'"),
        ({"train": {"learning_rate": "fast"}}, "train.learning_rate: must be a number or 'auto'"),
        ({"train": {"learning_rate": None}}, "train.learning_rate: must be a number or 'auto'"),
        ({"train": {"model": "resnet"}}, "train.model: must be one of"),
        ({"train": {"augment": {"zoom": 2}}}, "train.augment.zoom: must be in [0, 1)"),
        ({"train": {"augment": 3}}, "train.augment: must be a mapping"),
        ({"split": {"val_ratio": 0.5, "test_ratio": 0.5}}, "must leave room for train"),
        ({"image": {"color_mode": "RGB"}}, "image.color_mode: must be one of 'rgb', 'grayscale'"),
        ({"train": {"weights": "imagenet"}}, "train.weights: must be null for simple_cnn"),
        (
            {"train": {"model": "mobilenet_v2", "weights": "imagenet"}, "image": {"size": 96}},
            "image.color_mode: must be rgb for pretrained weights",
        ),
        ({"train": {"model": "resnet50"}, "image": {"size": 16}}, "image.size: must be >= 32"),
        ({"train": {"init_from": "saved_models/model.keras"}}, "copy it and its classes.json"),
        ({"train": {"fine_tune_layers": 3}}, "train.fine_tune_layers: must be 0 for simple_cnn"),
        ({"train": {"fine_tune_learning_rate": 0}}, "train.fine_tune_learning_rate: must be > 0"),
        ({"train": {"class_weight": "auto"}}, "train.class_weight: must be one of 'none'"),
        ({"train": {"min_steps": -1}}, "train.min_steps: must be >= 0"),
        (
            {"split": {"near_duplicate_bits": 40}},
            "split.near_duplicate_bits: must be in [0, 16] or null",
        ),
        ({"evaluate": {"baseline_margin": 1}}, "evaluate.baseline_margin: must be in [0, 1)"),
        (
            {"train": {"frozen_base_runtime": "litert", "distribute": "mirrored"}},
            "train.frozen_base_runtime: must be auto or tensorflow with train.distribute",
        ),
    ],
)
def test_bad_values_name_the_key(raw, fragment):
    with pytest.raises(ParamsError) as err:
        parse_params(raw)
    assert fragment in str(err.value)


def test_learning_rate_auto_is_a_word_not_a_number():
    assert parse_params({"train": {"learning_rate": "auto"}}).train.learning_rate == "auto"


def test_int_is_accepted_for_float_and_frozen():
    params = parse_params({"train": {"learning_rate": 1}})
    assert params.train.learning_rate == 1.0
    assert isinstance(params.train.learning_rate, float)
    with pytest.raises(AttributeError):
        params.train.learning_rate = 2.0


def test_load_params_reports_file_and_yaml_errors(tmp_path):
    bad = tmp_path / "params.yaml"
    bad.write_text("train: {epochs: [1, 2}\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(bad)
    bad.write_text("evaluate:\n  top_k: 0\n")
    with pytest.raises(ParamsError, match=r"params.yaml: evaluate.top_k: must be >= 1"):
        load_params(bad)
    with pytest.raises(ParamsError, match="file not found"):
        load_params(tmp_path / "nope.yaml")


def test_model_hash_tracks_training_params_only():
    base = parse_params({})
    assert base.model_hash() == parse_params({"evaluate": {"top_k": 5}}).model_hash()
    assert base.model_hash() != parse_params({"train": {"epochs": 3}}).model_hash()


def test_params_reference_is_generated_from_the_code():
    """docs/params.md is `python -m image_classifier.params`: run `make docs` after changing
    a default or a help text."""
    assert (ROOT / "docs/params.md").read_text(encoding="utf-8") == reference_markdown()


def test_every_param_has_help():
    assert all(help_text.strip() for *_, help_text in reference())
