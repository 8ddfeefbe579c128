"""PNG figures: confusion matrix, ROC curves, and galleries of captioned images."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: no display on CI or servers

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from sklearn.metrics import confusion_matrix

from image_classifier import atomic


def save_figure(fig: plt.Figure, path: Path) -> None:
    with atomic.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def confusion_figure(y_true: np.ndarray, y_pred: np.ndarray, classes: Sequence[str]) -> plt.Figure:
    matrix = confusion_matrix(y_true, y_pred, labels=np.arange(len(classes)))
    side = max(4.0, 0.45 * len(classes) + 2)
    fig, ax = plt.subplots(figsize=(side + 1, side))
    sns.heatmap(
        matrix,
        annot=len(classes) <= 30,
        fmt="d",
        cmap="Blues",
        cbar=True,
        ax=ax,
        xticklabels=list(classes),
        yticklabels=list(classes),
    )
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    ax.set_title("Confusion matrix (test split)")
    return fig


def roc_figure(roc: pd.DataFrame) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(6, 5))
    for name, points in roc.groupby("class", sort=False):
        style = {"color": "black", "linewidth": 2} if name == "(micro)" else {"alpha": 0.6}
        ax.plot(points["fpr"], points["tpr"], label=str(name), **style)
    ax.plot([0, 1], [0, 1], linestyle=":", color="grey")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title("ROC, one-vs-rest (test split)")
    if roc["class"].nunique() <= 21:
        ax.legend(fontsize="small", loc="lower right")
    return fig


def gallery_figure(
    images: Sequence[np.ndarray],
    titles: Sequence[str],
    columns: int = 4,
    title: str = "Most confident mistakes (test split)",
    empty: str = "no misclassified test images",
) -> plt.Figure:
    """Images with a caption each (evaluate: 'actual -> predicted (confidence)')."""
    if not images:
        fig, ax = plt.subplots(figsize=(4, 1))
        ax.text(0.5, 0.5, empty, ha="center", va="center")
        ax.axis("off")
        return fig
    rows = -(-len(images) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 2.2, rows * 2.4), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, img, caption in zip(axes.ravel(), images, titles, strict=False):
        pixels = img[..., 0] if img.shape[-1] == 1 else img
        ax.imshow(
            pixels.astype(np.uint8), cmap="gray" if img.shape[-1] == 1 else None, vmin=0, vmax=255
        )
        ax.set_title(caption, fontsize=8)
    fig.suptitle(title)
    return fig
