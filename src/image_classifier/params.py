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
PlateauFrom = Literal["min_steps", "start"]
OodMethod = Literal["auto", "mahalanobis", "mahalanobis_early", "knn", "energy", "msp"]
# evaluation/ood_sets.py draws each of these at the model's input size.
OodSet = Literal["noise", "blank", "flat", "gradients", "textures", "photos", "digits"]

TRANSFER_MIN_SIZE = 32


class ParamsError(ValueError):
    """A value in params.yaml is wrong; the message names the key."""


def _require(ok: bool, key: str, allowed: str, value: Any) -> None:
    if not ok:
        raise ParamsError(f"{key}: {allowed} (got {value!r})")


def param(
    default: Any,
    help: str,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
) -> Any:
    """A field's default, help text and allowed range, in one place: the dataclass checks the
    range when it is built, and docs/params.md is generated from all three."""
    bounds = {k: v for k, v in {"ge": ge, "gt": gt, "le": le, "lt": lt}.items() if v is not None}
    metadata = {"help": help, "bounds": bounds}
    if dataclasses.is_dataclass(default):
        return field(default_factory=type(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def range_text(bounds: dict[str, float]) -> str:
    """ "in [0, 1)", ">= 1", ...: how a field's bounds read in messages and the reference."""
    low = ("[", bounds["ge"]) if "ge" in bounds else ("(", bounds["gt"]) if "gt" in bounds else None
    high = (
        (bounds["le"], "]") if "le" in bounds else (bounds["lt"], ")") if "lt" in bounds else None
    )
    if low and high:
        return f"in {low[0]}{low[1]}, {high[0]}{high[1]}"
    if low:
        return f"{'>=' if low[0] == '[' else '>'} {low[1]}"
    return f"{'<=' if high[1] == ']' else '<'} {high[0]}" if high else ""


_OUTSIDE = {
    "ge": lambda v, b: v < b,
    "gt": lambda v, b: v <= b,
    "le": lambda v, b: v > b,
    "lt": lambda v, b: v >= b,
}


class _Section:
    """Base of the params dataclasses: checks every field against its param() bounds."""

    KEY = ""  # the section's key in params.yaml, for messages

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            bounds, value = f.metadata.get("bounds"), getattr(self, f.name)
            if (
                bounds
                and isinstance(value, int | float)  # not null, not a word such as `auto`
                and any(_OUTSIDE[kind](value, bound) for kind, bound in bounds.items())
            ):
                options = typing.get_args(hints[f.name])
                words = [a for o in options if typing.get_origin(o) is Literal for a in o.__args__]
                other = "".join(f" or {w!r}" for w in words)
                other += " or null" if type(None) in options else ""
                raise ParamsError(
                    f"{self.KEY}.{f.name}: must be {range_text(bounds)}{other} (got {value!r})"
                )


@dataclass(frozen=True)
class DataParams(_Section):
    KEY = "data"

    raw_dir: str = param(
        "data/raw",
        "The image folder: one sub-folder per class, `<raw_dir>/<class>/*`, and/or zip shards "
        "of `<class>/*` members (`python -m image_classifier.pack`).",
    )
    relabel: str = param(
        "data/relabel.csv",
        "CSV of `path,label[,sha256]` rows: the label overrides the image's folder; `drop` "
        "leaves it out. A row with the image's content hash follows it through renames; a row "
        "whose image is gone is reported (`python -m image_classifier.audit accept` writes it).",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        _require(bool(self.raw_dir.strip()), "data.raw_dir", "must be a folder path", self.raw_dir)
        _require(bool(self.relabel.strip()), "data.relabel", "must be a file path", self.relabel)


@dataclass(frozen=True)
class SplitParams(_Section):
    KEY = "split"

    seed: int = param(42, "Seed of the split: the same images and seed give the same split files.")
    val_ratio: float = param(0.15, "Share of the images for the validation split.", gt=0, lt=1)
    test_ratio: float = param(0.15, "Share of the images for the test split.", gt=0, lt=1)
    method: SplitMethod = param(
        "stratified",
        "`stratified`: exact per-class proportions of images, near-duplicate groups kept whole. "
        "`hash`: each file keeps its split when others are added (its split depends on its own "
        "content only).",
    )
    near_duplicate_bits: int | None = param(
        8,
        "Images whose 64-bit perceptual hashes differ in at most this many bits, and whose "
        "finer detail then matches too, are near-duplicates (re-encodes, resizes, crops) and "
        "share a split; 0 asks for identical hashes; null turns the check off.",
        ge=0,
        le=16,
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        total = self.val_ratio + self.test_ratio
        _require(
            total < 1, "split.val_ratio + split.test_ratio", "must leave room for train", total
        )


@dataclass(frozen=True)
class ImageParams(_Section):
    KEY = "image"

    size: int = param(
        16, "Model input is size x size pixels (the sample digits are 8x8).", ge=8, le=1024
    )
    color_mode: ColorMode = param("grayscale", "`rgb` or `grayscale`: the channels the model sees.")
    max_pixels: int = param(
        MAX_PIXELS,
        "Images with more pixels are refused before decoding (decompression bombs).",
        ge=1,
    )

    @property
    def channels(self) -> int:
        return channels(self.color_mode)


@dataclass(frozen=True)
class AugmentParams(_Section):
    KEY = "train.augment"

    flip: Flip = param("none", "`none`, `horizontal`, `vertical` or `horizontal_and_vertical`.")
    rotation: float = param(
        0.03, "Largest random rotation, as a fraction of a full turn.", ge=0, lt=1
    )
    zoom: float = param(
        0.1, "Largest random zoom in or out, as a fraction of the side.", ge=0, lt=1
    )
    contrast: float = param(0.0, "Largest random contrast change, as a fraction.", ge=0, lt=1)
    translation: float = param(0.08, "Largest random shift, as a fraction of the side.", ge=0, lt=1)

    @property
    def enabled(self) -> bool:
        return self.flip != "none" or any(
            (self.rotation, self.zoom, self.contrast, self.translation)
        )


@dataclass(frozen=True)
class TrainParams(_Section):
    KEY = "train"

    seed: int = param(42, "Seed of weights, shuffling and augmentation: same params, same model.")
    model: Architecture = param(
        "simple_cnn",
        "`simple_cnn` (small, from scratch) or a Keras Applications base: `mobilenet_v2`, "
        "`efficientnet_b0`, `resnet50`, `vgg19`.",
    )
    weights: str | None = param(
        None,
        "Transfer bases only: `imagenet` (downloaded by Keras), null (random) or the path of a "
        "weights file for the base (the train stage checks it exists; serving never reads it).",
    )
    fine_tune_layers: int = param(
        0,
        "Phase 2 of transfer learning: unfreeze the base's top N layers that have weights "
        "(BatchNormalization stays frozen); 0: no phase 2; -1: every layer.",
        ge=-1,
    )
    fine_tune_learning_rate: float = param(1e-5, "Learning rate of phase 2.", gt=0)
    fine_tune_epochs: int = param(10, "Epochs of phase 2.", ge=1)
    dropout: float = param(0.25, "Dropout before the classifier layer.", ge=0, lt=1)
    optimizer: Optimizer = param("adam", "`adam`, `adamw`, `sgd` or `rmsprop`.")
    learning_rate: float | Literal["auto"] = param(
        "auto",
        "Learning rate of training (phase 1 for transfer bases). `auto`: for a network trained "
        "from scratch, a range test before training chooses it (its curve and rate are in "
        "reports/train); a pretrained base's head trains at 0.003.",
        gt=0,
    )
    batch_size: int = param(
        64,
        "Images per step; a small training split gets smaller batches, so that an epoch is at "
        "least 8 steps.",
        ge=1,
    )
    epochs: int | Literal["auto"] = param(
        "auto",
        "Most epochs; early stopping usually ends training sooner. `auto`: 30, or more when a "
        "small training split needs them for train.min_steps steps. A number is what runs: "
        "nothing raises it.",
        ge=1,
    )
    early_stopping_patience: int = param(
        8, "Epochs without a better validation loss before training stops.", ge=0
    )
    min_steps: int = param(
        500,
        "Optimizer steps before early stopping may end training; small datasets get more epochs.",
        ge=0,
    )
    class_weight: ClassWeight = param(
        "none",
        "`balanced` weighs each class's loss by n / (classes x count), for imbalanced classes.",
    )
    reduce_lr_patience: int = param(
        4, "Epochs without a better validation loss before the learning rate is cut.", ge=0
    )
    reduce_lr_factor: float = param(
        0.5, "What the learning rate is multiplied by at each cut.", gt=0, lt=1
    )
    plateau_from: PlateauFrom = param(
        "min_steps",
        "When the learning-rate cuts and the choice of the best epoch start: `min_steps` (after "
        "the minimum budget of train.min_steps steps) or `start` (from the first epoch).",
    )
    distribute: Distribute = param(
        "none", "`none`, `mirrored` (several GPUs) or `multi_worker` (several machines)."
    )
    mixed_precision: bool = param(
        False, "Train in mixed_float16 (GPUs with tensor cores); the saved model is float32."
    )
    frozen_base_runtime: FrozenBaseRuntime = param(
        "auto",
        "Where phase 1 runs a frozen base forwards: `auto` (LiteRT without a GPU, TensorFlow "
        "otherwise), `litert` or `tensorflow`.",
    )
    op_determinism: bool = param(
        False,
        "TensorFlow's deterministic kernels: needed for bit-identical runs on a GPU, slower; "
        "CPU runs are reproducible without it.",
    )
    init_from: str | None = param(
        None,
        "Path of an earlier model.keras (with its classes.json and trained_on.csv) to continue "
        "training from, e.g. models/base/model.keras tracked with `dvc add models/base` (the "
        "split and train stages read it; serving never does).",
    )
    augment: AugmentParams = param(
        AugmentParams(), "Training-time augmentation (train split only)."
    )

    def __post_init__(self) -> None:
        super().__post_init__()
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

    def check_files(self) -> None:
        """The files training reads, checked by the train stage before any work. Not at load:
        the web app, the gate, drift and feedback read this params.yaml too, where a
        deployment ships no weights file and no init_from model."""
        if self.weights not in (None, "imagenet"):
            _require(
                Path(self.weights).is_file(),
                "train.weights",
                "must be imagenet, null or the path of an existing weights file",
                self.weights,
            )
        if self.init_from is not None:
            model = Path(self.init_from)
            for path, what in (
                (model, "the model to continue from"),
                (model.with_name(config.CLASSES_FILE.name), "its classes"),
                (config.trained_on_path(model), "the images it trained on"),
            ):
                _require(
                    path.is_file(),
                    "train.init_from",
                    f"{path} not found ({what}): copy model.keras with its "
                    f"{config.CLASSES_FILE.name} and {config.TRAINED_ON_FILE.name}",
                    self.init_from,
                )


@dataclass(frozen=True)
class EvaluateParams(_Section):
    KEY = "evaluate"

    top_k: int = param(3, "k of the top-k accuracy in reports/metrics.json.", ge=1)
    gallery_size: int = param(
        16, "Worst misclassified test images drawn in reports/eval/misclassified.png.", ge=0
    )
    baseline_margin: float = param(
        0.02,
        "The network must beat chance and the linear baseline (logistic regression on "
        "downsampled pixels) by this much on gate.metric; evaluate warns and the gate refuses "
        "otherwise.",
        ge=0,
        lt=1,
    )


@dataclass(frozen=True)
class AuditParams(_Section):
    KEY = "audit"

    folds: int = param(
        5, "Cross-validation folds for the out-of-sample probabilities of each image.", ge=3
    )
    gallery_size: int = param(16, "Top suspects drawn in reports/audit/gallery.png.", ge=0)
    retrain_up_to: int = param(
        20000,
        "From scratch (train.weights: null), up to this many train and val images: each "
        "image's probabilities come from one of `folds` networks trained as train does, "
        "without its fold (about folds x 0.6 x train's time). Above it, or 0: a logistic "
        "regression on the trained model's features, which learnt the wrong labels too "
        '(lower recall; docs/benchmarks.md, "Audit").',
        ge=0,
    )


@dataclass(frozen=True)
class ExportParams(_Section):
    KEY = "export"

    quantization: Quantization = param(
        "none",
        "`none` (float32), `float16` (weights), `dynamic` (int8 weights, float activations) or "
        "`int8` (weights and activations, calibrated on training images).",
    )
    max_prob_diff: float = param(
        1e-4,
        "A float32 export must agree with the Keras model within this, per probability.",
        gt=0,
        lt=1,
    )
    min_top1_agreement: float = param(
        0.97, "A quantized export must give Keras' top-1 class on at least this share.", gt=0, le=1
    )
    calibration_images: int = param(
        256, "int8: training images (seeded) that set the ranges.", ge=1
    )
    check_images: int | None = param(
        1000,
        "A quantized export: test images (a seeded sample; null: all) Keras runs on for the "
        "top-1 agreement check; the written model's metrics always cover the whole test split.",
        ge=1,
    )
    float32_check_images: int | None = param(
        100,
        "A float32 export: test images (a seeded sample; null: all) Keras runs on for the "
        "max_prob_diff check; a conversion fault shows on any image.",
        ge=1,
    )


@dataclass(frozen=True)
class OodParams(_Section):
    KEY = "ood"

    method: OodMethod = param(
        "auto",
        "How export scores an input's likeness to the training images (evaluation/ood.py; "
        'the comparison: docs/benchmarks.md, "None of these"). auto: mahalanobis_early for '
        "a pretrained base, mahalanobis for simple_cnn.",
    )
    accept: float = param(
        0.95,
        "Share of in-distribution images the threshold accepts as known (see confidence); "
        "serving answers `known: false` below it.",
        gt=0,
        lt=1,
    )
    confidence: float | None = param(
        0.9,
        "The chance that the threshold accepts at least ood.accept of all images like the "
        "validation images, not only of those: it then rejects fewer validation images "
        "(evaluation/ood.py, threshold_for). null: exactly ood.accept of the validation images.",
        gt=0,
        lt=1,
    )
    doubt: bool = param(
        True,
        "Also reject the answers the model is least sure of: an image is known only when both "
        "its ood.method score and its confidence in its top class rank among the validation "
        "images' (evaluation/ood.py). Rejects most wrong answers on ordinary images. false: "
        "the method's score alone.",
    )
    k: int = param(1, "`knn`: the neighbour whose similarity is the score.", ge=1)
    fit_images: int = param(
        2000, "Training images (a seeded sample) whose features the detector keeps.", ge=1
    )
    sets: tuple[OodSet, ...] = param(
        ("noise", "blank", "flat", "gradients", "textures", "digits"),
        "Out-of-distribution images evaluate scores the detector on; leave out any that look "
        "like your classes (`digits` for a digits model, `photos` for a photo model).",
    )
    images_per_set: int = param(100, "Images evaluate draws of each set.", ge=1)


@dataclass(frozen=True)
class ServeParams(_Section):
    """The web app's settings; no pipeline stage reads them."""

    KEY = "serve"

    top_k: int = param(3, "Classes shown per image, on the page and in the API.", ge=1)
    unsure_threshold: float = param(
        0.6,
        "Below this top-1 probability the page and the API say the model is unsure (of a known "
        'image: one the detector calls unknown gets "none of these" instead).',
        ge=0,
        le=1,
    )
    max_upload_mb: float = param(8.0, "Largest request body; larger gets 413.", gt=0)
    max_files: int = param(16, "Images per API request.", ge=1)
    max_explain_files: int = param(
        4,
        "Images per request with ?explain=true (each runs one inference per occluded patch).",
        ge=1,
    )
    model_name: str = param(
        "image-classifier", "The name in the TF Serving / KServe path /v1/models/<name>:predict."
    )
    database: str = param(
        "var/app.sqlite",
        "SQLite file for the drift counts and feedback when DATABASE_URL is unset (env DRIFT_DB "
        "overrides it; empty: neither is kept).",
    )
    db_timeout_s: float = param(
        2.0,
        "Longest wait for the database, per connection, pool checkout and statement; "
        "predictions never wait for it.",
        gt=0,
    )
    feedback: bool = param(
        False, "Let people report a wrong prediction with the right label (page and API)."
    )
    feedback_retention_days: float = param(
        90, "Feedback items older than this are deleted, reviewed or not.", gt=0
    )
    feedback_max_items: int = param(
        10000,
        "Most pending and accepted feedback items kept; past it new feedback gets 503.",
        ge=1,
    )
    feedback_max_mb: float = param(
        500, "Most megabytes of pending and accepted feedback images; past it 503.", gt=0
    )
    feedback_per_minute: int = param(
        10, "Feedback requests one client may send per minute to one worker (then 429).", ge=1
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        _require(
            bool(re.fullmatch(r"[A-Za-z0-9._-]+", self.model_name)),
            "serve.model_name",
            "must be letters, digits, '.', '_' or '-'",
            self.model_name,
        )


@dataclass(frozen=True)
class GateParams(_Section):
    """The deploy quality gate (python -m image_classifier.gate); evaluate reads gate.metric."""

    KEY = "gate"

    metric: str = param(
        "accuracy",
        "The key of reports/metrics.json the gate and the baseline margin judge. Chance on it is "
        "the best of the majority baseline's value of the same metric and what a uniform guess "
        "scores: 1/classes for accuracy, balanced accuracy and the macro or weighted precision, "
        "recall and F1; k/classes for top-k accuracy; 0 for cohen_kappa; 0.5 for ROC AUC.",
    )
    min_value: float = param(
        0.0,
        "The gate refuses a model below this. The default, 0, sets no fixed floor, since what "
        "is good depends on the data: the gate always refuses a model that does not beat chance "
        "(beyond the test split's sampling noise) or the linear baseline by "
        "evaluate.baseline_margin, which adapt to any dataset. Raise it when the task needs a "
        "known level.",
        ge=0,
        le=1,
    )
    max_drop: float = param(
        0.01,
        "... or one that falls more than this against the baseline revision's metrics "
        "(`--baseline-rev`; the deploy workflow gives the commit main was at before the push), "
        "when that revision's model was trained on the same classes; otherwise the gate judges "
        "the model alone.",
        ge=0,
        le=1,
    )


@dataclass(frozen=True)
class DriftParams(_Section):
    """Thresholds of python -m image_classifier.drift; no pipeline stage reads them."""

    KEY = "drift"

    max_class_psi: float = param(
        0.2,
        "Largest population stability index of the predicted classes, live vs test split.",
        gt=0,
    )
    max_confidence_psi: float = param(0.2, "... of the top-1 confidence histogram.", gt=0)
    max_confidence_drop: float = param(0.1, "Largest fall of the mean top-1 confidence.", gt=0)
    max_unknown_rate_increase: float = param(
        0.1,
        'Largest rise of the unknown rate, the share of predictions the detector calls "none '
        "of these\" (`known: false`), over the test split's (or 1 - ood.accept when "
        "reports/eval/predictions.csv has no `known` column); 0.1 = 10 percentage points.",
        gt=0,
        le=1,
    )
    min_samples: int = param(
        200, "Below this many live predictions the check does not judge.", ge=1
    )


@dataclass(frozen=True)
class Params:
    data: DataParams = param(DataParams(), "Where the images are.")
    split: SplitParams = param(SplitParams(), "Stage `split`: train/val/test manifests.")
    image: ImageParams = param(
        ImageParams(), "How every image is decoded, for training and serving."
    )
    train: TrainParams = param(TrainParams(), "Stage `train`.")
    evaluate: EvaluateParams = param(EvaluateParams(), "Stage `evaluate`.")
    audit: AuditParams = param(
        AuditParams(), "Stage `audit`: suspected label issues and outliers (not on deploy's path)."
    )
    export: ExportParams = param(ExportParams(), "Stage `export`: the LiteRT model.")
    ood: OodParams = param(
        OodParams(),
        '"None of these": the out-of-distribution detector export fits and serving applies.',
    )
    serve: ServeParams = param(ServeParams(), "The web app; no pipeline stage reads these.")
    gate: GateParams = param(
        GateParams(), "The deploy quality gate: `python -m image_classifier.gate`."
    )
    drift: DriftParams = param(
        DriftParams(), "`python -m image_classifier.drift`: live predictions vs the test split."
    )

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


def _is_union(tp: Any) -> bool:
    # `float | None` is a types.UnionType; `float | Literal["auto"]` a typing.Union.
    return isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is Literal:
        options = typing.get_args(tp)
        return repr(options[0]) if len(options) == 1 else "one of " + ", ".join(map(repr, options))
    if _is_union(tp):
        return " or ".join(
            "null" if a is type(None) else _type_name(a) for a in typing.get_args(tp)
        )
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    if typing.get_origin(tp) is tuple:
        return f"a list, each {_type_name(typing.get_args(tp)[0])}"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(
        tp, str(tp)
    )


def _convert(value: Any, tp: Any, key: str) -> Any:
    """Check one YAML value against a field's annotation; return it in the field's type."""
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ParamsError(f"{key}: must be a mapping (got {value!r})")
        return _build(tp, value, key)
    if _is_union(tp):
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
    if typing.get_origin(tp) is tuple:
        if not isinstance(value, list):
            raise ParamsError(f"{key}: must be {_type_name(tp)} (got {value!r})")
        item = typing.get_args(tp)[0]
        return tuple(_convert(v, item, f"{key}[{i}]") for i, v in enumerate(value))
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


def _default_text(value: Any) -> str:
    if value is None or isinstance(value, bool | tuple):
        return json.dumps(value)
    return str(value)


def reference(cls: type = Params, prefix: str = "") -> list[tuple[str, str, str, str]]:
    """(key, allowed, default, help) of every parameter, in params.yaml's order."""
    rows = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(hints[f.name]):
            rows.append((key, "a mapping", "", f.metadata["help"]))
            rows += reference(hints[f.name], f"{key}.")
        else:
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            allowed = _type_name(hints[f.name])
            if f.metadata["bounds"]:
                allowed += f", {range_text(f.metadata['bounds'])}"
            rows.append((key, allowed, _default_text(default), f.metadata["help"]))
    return rows


def reference_markdown() -> str:
    """docs/params.md: written by `make docs`, checked by tests/test_params.py."""
    lines = [
        "# Parameters",
        "",
        "Every key of `params.yaml`, its default and what it does. Generated from",
        "`src/image_classifier/params.py` by `make docs` (`python -m image_classifier.params`),",
        "the one home of the defaults: `params.yaml` is your project's file, and a key you",
        "delete from it takes its default here.",
        "",
    ]
    for key, allowed, default, help_text in reference():
        if "." not in key:
            lines += [
                "",
                f"## `{key}`",
                "",
                help_text,
                "",
                "| key | default | allowed | what it does |",
            ]
            lines.append("|---|---|---|---|")
        elif allowed == "a mapping":
            lines.append(f"| `{key}` | | a mapping | {help_text} |")
        else:
            lines.append(f"| `{key}` | `{default}` | {allowed} | {help_text} |")
    return "\n".join(lines).replace("\n\n\n", "\n\n") + "\n"


if __name__ == "__main__":
    print(reference_markdown(), end="")
