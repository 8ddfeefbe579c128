"""Why a network does not beat chance or the linear baseline: underfitting or overfitting,
from the fit.

The train stage measures the network on its own training images, unaugmented
(reports/train/metrics.json, `fit.train_accuracy`), next to the best epoch's validation
accuracy (`eval.accuracy`). A network that does not get its training images right has not
learnt what a linear model learns (underfitting), and more training comes first, whatever
the validation accuracy; one that does, but loses to the linear model (or scores no better
than guessing) on images it has not seen, has learnt the training images themselves
(overfitting): 0.98 on its training images and 0.28 on test images of 4 classes, say.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from image_classifier.params import TrainParams

# A network from scratch fits a small training split almost perfectly when it trains enough.
FITS_FROM = 0.98


def advice(case: str, train: TrainParams) -> str:
    """The params to change for the case, leaving out what is already set."""
    if case == "underfitting":
        steps = ["raise train.min_steps or train.epochs"]
        if train.learning_rate != "auto":
            steps.append("set train.learning_rate: auto")
        steps.append("lower train.dropout or train.augment.*")
        if train.model == "simple_cnn":
            steps.append("a larger image.size when the objects are small")
        return "train longer or at a better rate: " + "; ".join(steps)
    steps = ["add images", "raise train.augment.* or train.dropout"]
    if train.weights is None:
        steps.append(
            "start from a pretrained base (train.model: mobilenet_v2, train.weights: imagenet, "
            "image.size: 224, image.color_mode: rgb)"
        )
    elif train.fine_tune_layers != 0:
        steps.append("fine-tune fewer layers (train.fine_tune_layers)")
    return "regularise: " + "; ".join(steps)


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


def diagnose(
    train_accuracy: float, val_accuracy: float, train: TrainParams | None = None
) -> Diagnosis:
    """Underfitting when the fit is short of FITS_FROM; else overfitting."""
    case = "underfitting" if train_accuracy < FITS_FROM else "overfitting"
    return Diagnosis(case, train_accuracy, val_accuracy, advice(case, train or TrainParams()))


def from_train_metrics(summary: dict, train: TrainParams | None = None) -> Diagnosis | None:
    """The diagnosis from reports/train/metrics.json's contents; None when they lack the
    two accuracies."""
    fit = summary.get("fit", {}).get("train_accuracy")
    val = summary.get("eval", {}).get("accuracy")
    if fit is None or val is None:
        return None
    return diagnose(float(fit), float(val), train)
