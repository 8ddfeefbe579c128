"""Where everything lives. Paths are relative to the repository root, where DVC runs stages."""

from pathlib import Path

PARAMS_FILE = Path("params.yaml")

SAMPLE_DIR = Path("data/raw")
SPLITS_DIR = Path("data/splits")
SPLIT_NAMES = ("train", "val", "test")
# What the split scan found (skipped files, duplicates); `prepare` merges it into SPLIT_REPORT.
SCAN_REPORT = SPLITS_DIR / "scan.json"
# Decoded uint8 pixels of every split (stage `prepare`); see data/store.py for the layout.
PREPARED_DIR = Path("data/prepared")

MODELS_DIR = Path("saved_models")
KERAS_MODEL = MODELS_DIR / "model.keras"
TFLITE_MODEL = MODELS_DIR / "model.tflite"
MODEL_CARD = MODELS_DIR / "model.json"
CLASSES_FILE = MODELS_DIR / "classes.json"
# A test image that ships with the model, with what the model answers for it (model.json's
# `example`): the deploy's smoke check and `make run` use it, whatever the project's data.
EXAMPLE_IMAGE = MODELS_DIR / "example.png"
# A few test images per class (examples/<class index>_<n>.png, listed in model.json's
# `examples`): the web page offers them to try the model in one click.
EXAMPLES_DIR = MODELS_DIR / "examples"
# The out-of-distribution detector's statistics (evaluation/ood.py; model.json's `ood`).
OOD_STATS = MODELS_DIR / "ood.npz"
# Every image the model trained on (path,label,sha256): a later init_from run keeps them in train.
TRAINED_ON_FILE = MODELS_DIR / "trained_on.csv"
# The frozen base's features of train and val from phase 1 of training, for the audit stage,
# and which images they are (store.fingerprint).
POOLED_FEATURES = MODELS_DIR / "features.npy"
POOLED_FEATURES_INDEX = MODELS_DIR / "features.json"
# The served graph phase 1 converted with a marked head (training/served_graph.py), and the
# digest of the weights it holds: export writes the trained head into it instead of converting
# again. Empty (and null) when phase 1 did not run on LiteRT, or phase 2 changed the base.
SERVED_GRAPH = MODELS_DIR / "served_graph.tflite"
SERVED_GRAPH_INDEX = MODELS_DIR / "served_graph.json"

REPORTS_DIR = Path("reports")
SPLIT_REPORT = REPORTS_DIR / "split.json"
TRAIN_LIVE_DIR = REPORTS_DIR / "train"
METRICS_FILE = REPORTS_DIR / "metrics.json"
EXPORT_METRICS = REPORTS_DIR / "export.json"
# The written model's probabilities on the test split, from export, scored by evaluate.
TEST_PROBABILITIES = REPORTS_DIR / "test_probabilities.npz"
EVAL_DIR = REPORTS_DIR / "eval"
PREDICTIONS_FILE = EVAL_DIR / "predictions.csv"
EVALUATED_MODEL_FILE = "evaluated_model.json"  # in EVAL_DIR: the model version scored
RELIABILITY_FILE = EVAL_DIR / "reliability.csv"  # calibration per confidence bin (dvc plots)
# The Hugging Face-style model card evaluate writes from metrics.json; the bundle ships it.
MODEL_CARD_MD = REPORTS_DIR / "model_card.md"
AUDIT_DIR = REPORTS_DIR / "audit"
AUDIT_ISSUES = AUDIT_DIR / "issues.csv"
AUDIT_SUMMARY = AUDIT_DIR / "summary.json"
AUDIT_GALLERY = AUDIT_DIR / "gallery.png"


def trained_on_path(model: Path) -> Path:
    """The trained_on.csv that goes with a model.keras (written beside it)."""
    return model.with_name(TRAINED_ON_FILE.name)


def manifest_path(split: str) -> Path:
    return SPLITS_DIR / f"{split}.csv"
