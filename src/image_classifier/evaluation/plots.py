"""PNG figures: confusion matrix, ROC curves, reliability diagram, out-of-distribution scores, and
galleries of captioned images."""

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


def reliability_figure(table: pd.DataFrame, temperature: float) -> plt.Figure:
    """Reliability diagram (Guo et al., 2017): each confidence bin's accuracy against its mean
    confidence, before (T = 1) and after temperature scaling, on the diagonal of a perfectly
    calibrated model; below, how many test images each bin holds."""
    fig, (ax, hist) = plt.subplots(
        2, 1, figsize=(6, 6.5), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    ax.plot([0, 1], [0, 1], linestyle=":", color="grey", label="perfectly calibrated")
    series = (
        ("_uncalibrated", "before (T = 1)", {"color": "tab:orange", "marker": "s"}),
        ("", f"after (T = {temperature:.3g})", {"color": "tab:blue", "marker": "o"}),
    )
    centres = (table["bin_lower"] + table["bin_upper"]) / 2
    width = float((table["bin_upper"] - table["bin_lower"]).iloc[0]) if len(table) else 0.0
    for offset, (suffix, label, style) in zip((-0.25, 0.25), series, strict=True):
        filled = table[table[f"images{suffix}"] > 0]
        ax.plot(filled[f"confidence{suffix}"], filled[f"accuracy{suffix}"], label=label, **style)
        hist.bar(
            centres + offset * width,
            table[f"images{suffix}"],
            width=width / 2,
            color=style["color"],
            label=label,
        )
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("accuracy")
    ax.set_title("Reliability diagram (test split)")
    ax.legend(loc="upper left", fontsize="small")
    hist.set_yscale("symlog")
    hist.set_xlabel("confidence (top-1 probability)")
    hist.set_ylabel("images")
    return fig


def ood_scores_figure(
    test_scores: np.ndarray, sets: dict[str, np.ndarray], threshold: float, method: str
) -> plt.Figure:
    """Histograms of the detector's score on the test split and on each out-of-distribution
    set, with the served threshold: what it accepts lies to its right."""
    fig, ax = plt.subplots(figsize=(7, 4))
    values = [np.asarray(test_scores, dtype=np.float64), *sets.values()]
    finite = np.concatenate([v[np.isfinite(v)] for v in values]) if values else np.empty(0)
    if len(finite):
        lo, hi = np.percentile(finite, [1, 100])
        bins = np.linspace(min(lo, threshold), max(hi, threshold), 50)
        ax.hist(np.clip(values[0], bins[0], bins[-1]), bins=bins, alpha=0.6, label="test split",
                color="black", density=True)  # fmt: skip
        for name, scores in sets.items():
            ax.hist(np.clip(scores, bins[0], bins[-1]), bins=bins, alpha=0.5, label=name,
                    density=True, histtype="step", linewidth=1.5)  # fmt: skip
    ax.axvline(threshold, color="red", linestyle="--", label="threshold")
    ax.set_xlabel(f"{method} score (higher: more like the training images)")
    ax.set_ylabel("density")
    ax.set_title("Out-of-distribution scores: test split and generated sets")
    ax.legend(fontsize="small", loc="best")
    return fig
