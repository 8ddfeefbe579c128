"""params.yaml, loaded once into frozen dataclasses and validated before any work starts.

Every mistake (an unknown key, a wrong type, a value out of range) raises ParamsError with one
message that names the key and says what is allowed.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from image_classifier import config
from image_classifier.preprocessing import MAX_PIXELS, channels

ColorMode = Literal["rgb", "grayscale"]
Architecture = Literal["simple_cnn", "mobilenet_v2", "efficientnet_b0", "resnet50", "vgg19"]
Optimizer = Literal["adam", "adamw", "sgd", "rmsprop"]
Flip = Literal["none", "horizontal", "vertical", "horizontal_and_vertical"]
Distribute = Literal["none", "mirrored", "multi_worker"]
SplitMethod = Literal["stratified", "hash"]
ClassWeight = Literal["none", "balanced"]
Quantization = Literal["none", "float16", "dynamic", "int8"]
FrozenBaseRuntime = Literal["auto", "litert", "tensorflow"]

TRANSFER_MIN_SIZE = 32


class ParamsError(ValueError):
    """A value in params.yaml is wrong; the message names the key."""


def _require(ok: bool, key: str, allowed: str, value: Any) -> None:
    if not ok:
        raise ParamsError(f"{key}: {allowed} (got {value!r})")


@dataclass(frozen=True)
class DataParams:
    raw_dir: str = "data/raw"

    def __post_init__(self) -> None:
        _require(bool(self.raw_dir.strip()), "data.raw_dir", "must be a folder path", self.raw_dir)


@dataclass(frozen=True)
class SplitParams:
    seed: int = 42
    val_ratio: float = 0.15
    test_ratio: float = 0.15
    # stratified: exact per-class proportions; hash: each file keeps its split when others are
    # added (its split depends on its own content only).
    method: SplitMethod = "stratified"
    # Images whose 64-bit perceptual hashes (pHash of the decoded pixels) differ in at most
    # this many bits are near-duplicates (re-encodes, resizes, crops) and share a split.
    # null turns the check off; 0 groups only identical hashes.
    near_duplicate_bits: int | None = 8

    def __post_init__(self) -> None:
        if self.near_duplicate_bits is not None:
            _require(
                0 <= self.near_duplicate_bits <= 16,
                "split.near_duplicate_bits",
                "must be null (off) or 0..16 bits of 64",
                self.near_duplicate_bits,
            )
        for name in ("val_ratio", "test_ratio"):
            value = getattr(self, name)
            _require(0 < value < 1, f"split.{name}", "must be between 0 and 1", value)
        total = self.val_ratio + self.test_ratio
        _require(
            total < 1, "split.val_ratio + split.test_ratio", "must leave room for train", total
        )


@dataclass(frozen=True)
class ImageParams:
    size: int = 16
    color_mode: ColorMode = "grayscale"
    max_pixels: int = MAX_PIXELS

    def __post_init__(self) -> None:
        _require(8 <= self.size <= 1024, "image.size", "must be between 8 and 1024", self.size)
        _require(self.max_pixels >= 1, "image.max_pixels", "must be >= 1", self.max_pixels)

    @property
    def channels(self) -> int:
        return channels(self.color_mode)


@dataclass(frozen=True)
class AugmentParams:
    flip: Flip = "none"
    rotation: float = 0.0  # fraction of a full turn, as keras.layers.RandomRotation
    zoom: float = 0.0
    contrast: float = 0.0
    translation: float = 0.0

    def __post_init__(self) -> None:
        for name in ("rotation", "zoom", "contrast", "translation"):
            value = getattr(self, name)
            _require(0 <= value < 1, f"train.augment.{name}", "must be in [0, 1)", value)

    @property
    def enabled(self) -> bool:
        return self.flip != "none" or any(
            (self.rotation, self.zoom, self.contrast, self.translation)
        )


@dataclass(frozen=True)
class TrainParams:
    seed: int = 42
    model: Architecture = "simple_cnn"
    # imagenet | null | a path to a weights file for the base network.
    weights: str | None = None
    # Phase 2 of transfer learning: unfreeze the base's top N layers that have weights
    # (convolutions, dense; BatchNormalization stays frozen) at fine_tune_learning_rate.
    # 0: no phase 2; -1: every layer. Checked against the base when the model is built.
    fine_tune_layers: int = 0
    fine_tune_learning_rate: float = 1e-5
    fine_tune_epochs: int = 10
    dropout: float = 0.25
    optimizer: Optimizer = "adam"
    learning_rate: float = 0.001
    batch_size: int = 32
    epochs: int = 40
    early_stopping_patience: int = 10
    # Small datasets: at least this many optimizer steps before early stopping may end
    # training (epochs are added when needed); see train.training_budget.
    min_steps: int = 300
    # balanced: weight each class's loss by n / (classes * count), for imbalanced data.
    class_weight: ClassWeight = "none"
    reduce_lr_patience: int = 4
    reduce_lr_factor: float = 0.5
    distribute: Distribute = "none"
    # Train in mixed_float16 (GPUs with tensor cores); the saved model is float32 either way.
    mixed_precision: bool = False
    # Where phase 1 runs the frozen base forwards: auto = LiteRT on a machine without a GPU
    # (~3x TensorFlow's CPU speed), TensorFlow otherwise; see frozen_base.py.
    frozen_base_runtime: FrozenBaseRuntime = "auto"
    # TF's deterministic kernels: needed for bit-identical runs on GPU, slower; CPU runs are
    # reproducible without it (see train.seed_everything).
    op_determinism: bool = False
    # Continue from an earlier model.keras instead of starting from scratch.
    init_from: str | None = None
    augment: AugmentParams = field(default_factory=AugmentParams)

    def __post_init__(self) -> None:
        _require(self.learning_rate > 0, "train.learning_rate", "must be > 0", self.learning_rate)
        _require(self.batch_size >= 1, "train.batch_size", "must be >= 1", self.batch_size)
        _require(self.epochs >= 1, "train.epochs", "must be >= 1", self.epochs)
        _require(self.min_steps >= 0, "train.min_steps", "must be >= 0", self.min_steps)
        _require(
            self.fine_tune_learning_rate > 0,
            "train.fine_tune_learning_rate",
            "must be > 0",
            self.fine_tune_learning_rate,
        )
        _require(
            self.fine_tune_epochs >= 1,
            "train.fine_tune_epochs",
            "must be >= 1",
            self.fine_tune_epochs,
        )
        _require(0 <= self.dropout < 1, "train.dropout", "must be in [0, 1)", self.dropout)
        _require(
            self.fine_tune_layers >= -1,
            "train.fine_tune_layers",
            "must be -1 (all) or a count >= 0",
            self.fine_tune_layers,
        )
        for name in ("early_stopping_patience", "reduce_lr_patience"):
            value = getattr(self, name)
            _require(value >= 0, f"train.{name}", "must be >= 0", value)
        _require(
            0 < self.reduce_lr_factor < 1,
            "train.reduce_lr_factor",
            "must be in (0, 1)",
            self.reduce_lr_factor,
        )
        _require(
            self.frozen_base_runtime != "litert" or self.distribute == "none",
            "train.frozen_base_runtime",
            "must be auto or tensorflow with train.distribute (litert runs phase 1 in this "
            "process only)",
            self.frozen_base_runtime,
        )
        if self.init_from is not None:
            # DVC deletes a stage's outputs before running it: the model must be a copy.
            _require(
                Path(self.init_from) != config.KERAS_MODEL,
                "train.init_from",
                f"must not be {config.KERAS_MODEL} itself (the train stage replaces it); "
                "copy it and its classes.json elsewhere first",
                self.init_from,
            )
        if self.model == "simple_cnn":
            _require(
                self.weights is None,
                "train.weights",
                "must be null for simple_cnn (it has no pretrained base)",
                self.weights,
            )
            _require(
                self.fine_tune_layers == 0,
                "train.fine_tune_layers",
                "must be 0 for simple_cnn (it has no pretrained base; it trains whole)",
                self.fine_tune_layers,
            )
        elif self.weights not in (None, "imagenet"):
            _require(
                Path(self.weights).is_file(),
                "train.weights",
                "must be imagenet, null or the path of an existing weights file",
                self.weights,
            )


@dataclass(frozen=True)
class EvaluateParams:
    top_k: int = 3
    gallery_size: int = 16  # worst misclassified test images drawn in the gallery
    # The network must beat the linear baseline (logistic regression on downsampled pixels)
    # by this much on the gate metric; evaluate warns and the gate refuses otherwise.
    baseline_margin: float = 0.02

    def __post_init__(self) -> None:
        _require(
            0 <= self.baseline_margin < 1,
            "evaluate.baseline_margin",
            "must be in [0, 1)",
            self.baseline_margin,
        )
        _require(self.top_k >= 1, "evaluate.top_k", "must be >= 1", self.top_k)
        _require(self.gallery_size >= 0, "evaluate.gallery_size", "must be >= 0", self.gallery_size)


@dataclass(frozen=True)
class ExportParams:
    # none: float32. float16: weights stored as float16. dynamic: int8 weights, float
    # activations. int8: weights and activations int8, calibrated on training images.
    quantization: Quantization = "none"
    # A float32 export must agree with the Keras model on the test split within this...
    max_prob_diff: float = 1e-4
    # ... a quantized one must give the same top-1 class on at least this share of it.
    min_top1_agreement: float = 0.97
    calibration_images: int = 256  # training images int8 calibration reads (seeded)
    # Test images the Keras model runs on for the checks above (a seeded sample; null: all).
    # The written model's own metrics always cover the whole test split.
    check_images: int | None = 1000

    def __post_init__(self) -> None:
        if self.check_images is not None:
            _require(
                self.check_images >= 1,
                "export.check_images",
                "must be >= 1 or null (the whole test split)",
                self.check_images,
            )
        _require(
            0 < self.max_prob_diff < 1,
            "export.max_prob_diff",
            "must be in (0, 1)",
            self.max_prob_diff,
        )
        _require(
            0 < self.min_top1_agreement <= 1,
            "export.min_top1_agreement",
            "must be in (0, 1]",
            self.min_top1_agreement,
        )
        _require(
            self.calibration_images >= 1,
            "export.calibration_images",
            "must be >= 1",
            self.calibration_images,
        )


@dataclass(frozen=True)
class ServeParams:
    """The web app's settings; no pipeline stage reads them."""

    top_k: int = 3
    # Below this top-1 probability the page says the model is unsure and shows alternatives.
    unsure_threshold: float = 0.6
    max_upload_mb: float = 8.0  # whole request body; larger gets 413
    max_files: int = 16  # images per API request
    # ?explain=true runs ~50 inferences an image (occlusion); this caps the files it accepts.
    max_explain_files: int = 4
    model_name: str = "image-classifier"  # for /v1/models/<name>:predict
    # Prediction counts per model version for the drift check ("" turns recording off).
    drift_db: str = "var/drift.sqlite"

    def __post_init__(self) -> None:
        _require(self.top_k >= 1, "serve.top_k", "must be >= 1", self.top_k)
        _require(
            0 <= self.unsure_threshold <= 1,
            "serve.unsure_threshold",
            "must be in [0, 1]",
            self.unsure_threshold,
        )
        _require(self.max_upload_mb > 0, "serve.max_upload_mb", "must be > 0", self.max_upload_mb)
        _require(self.max_files >= 1, "serve.max_files", "must be >= 1", self.max_files)
        _require(
            self.max_explain_files >= 1,
            "serve.max_explain_files",
            "must be >= 1",
            self.max_explain_files,
        )
        _require(
            bool(re.fullmatch(r"[A-Za-z0-9._-]+", self.model_name)),
            "serve.model_name",
            "must be letters, digits, '.', '_' or '-'",
            self.model_name,
        )


@dataclass(frozen=True)
class GateParams:
    """The deploy quality gate (python -m image_classifier.gate); no pipeline stage reads it."""

    metric: str = "accuracy"  # a key of reports/metrics.json
    min_value: float = 0.95
    max_drop: float = 0.01  # largest allowed fall against the baseline (metrics on main)

    def __post_init__(self) -> None:
        _require(0 <= self.min_value <= 1, "gate.min_value", "must be in [0, 1]", self.min_value)
        _require(0 <= self.max_drop <= 1, "gate.max_drop", "must be in [0, 1]", self.max_drop)


@dataclass(frozen=True)
class DriftParams:
    """Thresholds of python -m image_classifier.drift; no pipeline stage reads them."""

    max_class_psi: float = 0.2  # PSI above 0.2 is the usual "significant shift"
    max_confidence_psi: float = 0.2
    max_confidence_drop: float = 0.1  # mean top-1 confidence, live vs test split
    min_samples: int = 200  # fewer live predictions: too early to judge

    def __post_init__(self) -> None:
        for name in ("max_class_psi", "max_confidence_psi", "max_confidence_drop"):
            value = getattr(self, name)
            _require(value > 0, f"drift.{name}", "must be > 0", value)
        _require(self.min_samples >= 1, "drift.min_samples", "must be >= 1", self.min_samples)


@dataclass(frozen=True)
class Params:
    data: DataParams = field(default_factory=DataParams)
    split: SplitParams = field(default_factory=SplitParams)
    image: ImageParams = field(default_factory=ImageParams)
    train: TrainParams = field(default_factory=TrainParams)
    evaluate: EvaluateParams = field(default_factory=EvaluateParams)
    export: ExportParams = field(default_factory=ExportParams)
    serve: ServeParams = field(default_factory=ServeParams)
    gate: GateParams = field(default_factory=GateParams)
    drift: DriftParams = field(default_factory=DriftParams)

    def __post_init__(self) -> None:
        if self.train.model != "simple_cnn":
            _require(
                self.image.size >= TRANSFER_MIN_SIZE,
                "image.size",
                f"must be >= {TRANSFER_MIN_SIZE} for {self.train.model}",
                self.image.size,
            )
            if self.train.weights is not None:
                _require(
                    self.image.color_mode == "rgb",
                    "image.color_mode",
                    "must be rgb for pretrained weights (imagenet or a weights file)",
                    self.image.color_mode,
                )

    def model_hash(self) -> str:
        """Short hash of every parameter the trained model depends on."""
        relevant = {
            k: dataclasses.asdict(getattr(self, k)) for k in ("data", "split", "image", "train")
        }
        blob = json.dumps(relevant, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if isinstance(tp, types.UnionType):
        return " or ".join(
            "null" if a is type(None) else _type_name(a) for a in typing.get_args(tp)
        )
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(
        tp, str(tp)
    )


def _convert(value: Any, tp: Any, key: str) -> Any:
    """Check one YAML value against a field's annotation; return it in the field's type."""
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ParamsError(f"{key}: must be a mapping (got {value!r})")
        return _build(tp, value, key)
    if isinstance(tp, types.UnionType):
        for option in typing.get_args(tp):
            if option is type(None) and value is None:
                return None
            if option is not type(None):
                try:
                    return _convert(value, option, key)
                except ParamsError:
                    continue
        raise ParamsError(f"{key}: must be {_type_name(tp)} (got {value!r})")
    if typing.get_origin(tp) is Literal:
        if value not in typing.get_args(tp):
            raise ParamsError(f"{key}: must be {_type_name(tp)} (got {value!r})")
        return value
    # bool is a subclass of int in Python; `epochs: true` is still a mistake.
    ok = {
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, int | float) and not isinstance(value, bool),
        str: isinstance(value, str),
        bool: isinstance(value, bool),
    }[tp]
    if not ok:
        raise ParamsError(f"{key}: must be {_type_name(tp)} (got {value!r})")
    return float(value) if tp is float else value


def _build(cls: type, raw: dict[str, Any], prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in raw.items():
        full = f"{prefix}.{key}" if prefix else str(key)
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ParamsError(f"{full}: unknown key (allowed: {', '.join(names)}){hint}")
        kwargs[key] = _convert(value, hints[key], full)
    return cls(**kwargs)


def parse_params(raw: dict[str, Any] | None) -> Params:
    """Validate a params mapping (as read from YAML) into Params."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ParamsError(f"top level: must be a mapping of sections (got {type(raw).__name__})")
    return _build(Params, raw)


def load_params(path: Path = config.PARAMS_FILE) -> Params:
    """Read and validate params.yaml; ParamsError messages start with the file name."""
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ParamsError(f"{path}: file not found (run from the repository root)") from None
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML: {exc}") from None
    try:
        return parse_params(raw)
    except ParamsError as exc:
        raise ParamsError(f"{path}: {exc}") from None
