"""Why a network does not beat the linear baseline: underfitting or overfitting, from the fit.

The train stage measures the network on its own training images, unaugmented
(reports/train/metrics.json, `fit.train_accuracy`), next to the best epoch's validation
accuracy (`eval.accuracy`). A network that does not get its training images right has not
learnt what a linear model learns (underfitting), and more training comes first, whatever
the validation accuracy; one that does, but loses to the linear model on images it has not
seen, has learnt the training images themselves (overfitting).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

# A network from scratch fits a small training split almost perfectly when it trains enough.
FITS_FROM = 0.98

ADVICE = {
    "underfitting": (
        "train longer or faster: raise train.min_steps, set train.learning_rate: auto, raise "
        "train.reduce_lr_patience; lower train.dropout or train.augment.*; a larger image.size "
        "when the objects are small"
    ),
    "overfitting": (
        "add images, or regularise: raise train.augment.* or train.dropout; or start from a "
        "pretrained base (train.model: mobilenet_v2, train.weights: imagenet, image.size: 224, "
        "image.color_mode: rgb)"
    ),
}


@dataclass(frozen=True)
class Diagnosis:
    case: str  # "underfitting" or "overfitting"
    train_accuracy: float
    val_accuracy: float
    advice: str

    def text(self) -> str:
        return (
            f"{self.case}: the network gets {self.train_accuracy:.2f} of its own training "
            f"images right and {self.val_accuracy:.2f} of the validation images; "
            f"{self.advice}"
        )

    def as_dict(self) -> dict:
        return asdict(self)


def diagnose(train_accuracy: float, val_accuracy: float) -> Diagnosis:
    """Underfitting when the fit is short of FITS_FROM; else overfitting."""
    case = "underfitting" if train_accuracy < FITS_FROM else "overfitting"
    return Diagnosis(case, train_accuracy, val_accuracy, ADVICE[case])


def from_train_metrics(summary: dict) -> Diagnosis | None:
    """The diagnosis from reports/train/metrics.json's contents; None when they lack the
    two accuracies."""
    fit = summary.get("fit", {}).get("train_accuracy")
    val = summary.get("eval", {}).get("accuracy")
    if fit is None or val is None:
        return None
    return diagnose(float(fit), float(val))
