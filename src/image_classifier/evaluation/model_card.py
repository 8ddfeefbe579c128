"""reports/model_card.md: the model card, in the Hugging Face convention (Mitchell et al., 2019).

YAML front matter with a `model-index` of the test metrics (the Hub shows them as the model's
results), then sections: model details, intended and out-of-scope use, classes with their
images per split, metrics next to the baselines, calibration, out-of-distribution behaviour,
the label audit, known limitations and versions.

Every metric number comes from `scores`, the dict evaluate writes to reports/metrics.json, or,
per out-of-distribution set, from reports/eval/ood.json's `sets`; all of them go through
`number` (the front matter keeps the exact values). The metric sections (METRIC_SECTIONS) show
numbers only in table cells whose row and column name the key, and no digit in their prose,
so a test can check each one against metrics.json.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

# The sections whose numbers are metrics (tests/test_model_card.py checks every one).
METRIC_SECTIONS = ("Metrics (test split)", "Calibration", "Out-of-distribution behaviour")
DECIMALS = 4
MISSING = "–"
# A class with fewer training images than this, or than SMALL_SHARE of the median class's,
# is called small among the known limitations.
SMALL_CLASS_IMAGES = 30
SMALL_SHARE = 0.2

# Rows of the metrics table, in order; the table shows those the scores hold.
HEADLINE = (
    "accuracy",
    "balanced_accuracy",
    "f1_macro",
    "f1_weighted",
    "precision_macro",
    "recall_macro",
    "cohen_kappa",
    "roc_auc",
    "roc_auc_ovr",
)
# The model-index's metrics (each key's name on the Hub), when the scores hold them.
INDEX_NAMES = {
    "accuracy": "Accuracy",
    "balanced_accuracy": "Balanced accuracy",
    "f1_macro": "F1 (macro)",
    "cohen_kappa": "Cohen's kappa",
    "roc_auc": "ROC AUC",
    "roc_auc_ovr": "ROC AUC (one-vs-rest)",
    "ece": "Expected calibration error (15 bins)",
    "log_loss": "Log loss",
    "accuracy_known": "Accuracy on the images called known",
    "ood_auroc": "Out-of-distribution AUROC",
    "ood_fpr_at_95_tpr": "Out-of-distribution FPR at 95% TPR",
}
SET_COLUMNS = ("images", "auroc", "fpr_at_95_tpr", "rejected", "auroc_msp", "fpr_at_95_tpr_msp")


def number(value: Any) -> str:
    """The one place a metric is formatted: integers whole, other numbers to DECIMALS places,
    MISSING for none."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    if isinstance(value, bool):
        raise TypeError(f"not a number: {value!r}")
    if isinstance(value, int):
        return str(value)
    return f"{float(value):.{DECIMALS}f}"


@dataclass(frozen=True)
class CardFacts:
    """What the card describes, besides the scores: model.json, the images per class and
    split, the audit's counts, the fit diagnosis and the software versions."""

    model: Mapping[str, Any]
    counts: Mapping[str, Mapping[str, int]]  # split -> class -> images
    ood_sets: Mapping[str, Mapping[str, float]] = field(default_factory=dict)  # ood.json's sets
    audit: Mapping[str, Any] | None = None
    refused: bool = False  # evaluate's warning: not better than chance or the linear baseline
    diagnosis: Mapping[str, Any] | None = None  # evaluated_model.json's, with the warning
    gate_metric: str = "accuracy"
    weights: str | None = None  # train.weights: a pretrained base's, or None
    versions: Mapping[str, str] = field(default_factory=dict)  # package -> version


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    return out


def _code(text: str) -> str:
    return f"`{text}`"


def top_k_keys(scores: Mapping[str, Any]) -> list[str]:
    return sorted(k for k in scores if re.fullmatch(r"top_\d+_accuracy", k))


def front_matter(scores: Mapping[str, Any], model: Mapping[str, Any]) -> str:
    keys = [k for k in (*INDEX_NAMES, *top_k_keys(scores)) if scores.get(k) is not None]
    metrics = [
        {"type": k, "value": scores[k], "name": INDEX_NAMES.get(k, k.replace("_", " "))}
        for k in keys
    ]
    meta = {
        "pipeline_tag": "image-classification",
        "tags": ["image-classification", "litert", "tflite", "dvc"],
        "model-index": [
            {
                "name": "image-classifier",
                "results": [
                    {
                        "task": {"type": "image-classification", "name": "Image Classification"},
                        "dataset": {
                            "type": "imagefolder",
                            "name": "held-out test split (data/prepared/test.npy)",
                            "split": "test",
                        },
                        "metrics": metrics,
                    }
                ],
            }
        ],
    }
    return "---\n" + yaml.safe_dump(meta, sort_keys=False, allow_unicode=True) + "---\n"


def _details(model: Mapping[str, Any], facts: CardFacts) -> list[str]:
    inp = model.get("input", {})
    ood = model.get("ood", {})
    base = f", from pretrained `{facts.weights}` weights" if facts.weights else ", from scratch"
    return [
        "## Model details",
        "",
        f"- **Version:** `{model.get('version', 'unknown')}` (created {model.get('created', '?')}"
        f", params hash `{str(model.get('params_hash', ''))[:12]}`)",
        f"- **Architecture:** `{model.get('architecture', '?')}`{base}, trained with Keras and "
        "served as a LiteRT (`.tflite`) file",
        f"- **Input:** one image, decoded to {inp.get('size', '?')} × {inp.get('size', '?')} "
        f"pixels, {inp.get('color_mode', '?')} ({inp.get('channels', '?')} channel(s)), values "
        f"0–255, by the shared preprocessing (version {model.get('preprocessing_version', '?')})",
        f"- **Quantization:** {model.get('quantization', 'none')}",
        f"- **Output:** a probability for each of the {len(model.get('classes', []))} classes "
        "below, temperature-scaled (see Calibration), and an out-of-distribution score with "
        f"its verdict, `known` (the `{ood.get('method', 'none')}` detector"
        f"{', with the confidence' if ood.get('doubt') else ''})",
        "- **Files:** `saved_models/model.tflite`, `saved_models/model.json` (classes, input, "
        "temperature, detector threshold), `saved_models/ood.npz` (the detector's statistics)",
        "",
    ]


def _use(model: Mapping[str, Any]) -> list[str]:
    ood = model.get("ood", {})
    accept = ood.get("accept")
    share = f"{100 * float(accept):g} % of them" if accept is not None else "most of them"
    flagged = f"about {100 * (1 - float(accept)):g} %" if accept is not None else "some"
    confidence = ood.get("confidence")
    if accept is not None and confidence is not None:
        share = (
            f"at least {100 * float(accept):g} % of images like them "
            f"(with {100 * float(confidence):g} % confidence)"
        )
        flagged = f"up to {100 * (1 - float(accept)):g} %"
    classes = ", ".join(f"`{c}`" for c in model.get("classes", []))
    return [
        "## Intended use",
        "",
        f"Telling which of these classes one image shows: {classes}. The images should look "
        "like the training images: one object (or one character) per image, framed and lit "
        "as they were. The probabilities are calibrated on the validation split, so "
        "among answers given with probability p about a share p is right, on images like "
        "those. An image the detector calls unknown gets `known: false` with the closest "
        "classes, not an answer"
        + (
            "; so does an image whose answer the model is as unsure of as its least sure "
            "answers on the validation images (`ood.doubt`)."
            if ood.get("doubt")
            else "."
        ),
        "",
        "## Out-of-scope use",
        "",
        "- Images of anything but these classes. The out-of-distribution detector compares "
        "the network's features (or logits) of an image with those of the training images, "
        f"and calls it unknown below a threshold set on the validation images to accept {share}"
        f": so {flagged} of ordinary images are flagged too. It catches images far "
        "from the training data (noise, blank or flat images, textures, other kinds of "
        "pictures; measured below); it does not reliably catch near misses: an object that "
        "resembles a class (a letter for a digits model, a related breed), a class image "
        "with an unusual background, several objects in one image, or inputs crafted to "
        "fool the network. Those get a confident class.",
        "- Images that differ from the training data in kind (other cameras, scanners, "
        "lighting or preprocessing): accuracy and calibration are measured only on the test "
        "split, which comes from the same folder as the training images.",
        "- Decisions about people, or any decision with consequences, without a person "
        "reviewing the answer.",
        "",
    ]


def _classes(model: Mapping[str, Any], counts: Mapping[str, Mapping[str, int]]) -> list[str]:
    splits = [s for s in ("train", "val", "test") if s in counts]
    rows = []
    for name in model.get("classes", []):
        per = [int(counts[s].get(name, 0)) for s in splits]
        rows.append([_code(name), *map(str, per), str(sum(per))])
    totals = [sum(int(v) for v in counts[s].values()) for s in splits]
    rows.append(["**all**", *map(str, totals), str(sum(totals))])
    return [
        "## Classes",
        "",
        "Images per class and split (data/prepared):",
        "",
        *_table(["class", *splits, "total"], rows),
        "",
    ]


def _metrics(scores: Mapping[str, Any], gate_metric: str) -> list[str]:
    rows = []
    for key in (*HEADLINE, *top_k_keys(scores), "n_test"):
        if key not in scores:
            continue
        base = [scores.get(f"baseline_{b}_{key}") for b in ("linear", "majority")]
        rows.append([_code(key), number(scores[key]), *map(number, base)])
    return [
        "## Metrics (test split)",
        "",
        "The served `.tflite` file on the held-out test split, next to two baselines on the "
        "same images: a logistic regression on downsampled pixels (`linear`) and always the "
        f"most frequent training class (`majority`). The quality gate judges `{gate_metric}`.",
        "",
        *_table(["metric", "model", "linear baseline", "majority baseline"], rows),
        "",
    ]


def _calibration(scores: Mapping[str, Any]) -> list[str]:
    if "ece" not in scores:
        return ["## Calibration", "", "Not measured.", ""]
    rows = [
        [_code(k), number(scores.get(f"{k}_uncalibrated")), number(scores.get(k))]
        for k in ("ece", "log_loss")
    ]
    return [
        "## Calibration",
        "",
        "One temperature, fitted on the validation split by maximum likelihood, divides the "
        "logits before the softmax (Guo et al.): no top class changes, only how sure "
        "the probabilities say the model is. `ece` is the expected calibration error over "
        "fifteen equal-width confidence bins (lower is better; zero means that among answers "
        "given with probability p a share p is right); `log_loss` the mean negative "
        "log-likelihood of the true class. Test split, before and after:",
        "",
        *_table(["metric", "before calibration", "after calibration"], rows),
        "",
        *_table(["setting", "value"], [[_code("temperature"), number(scores.get("temperature"))]]),
        "",
        "The reliability diagram: `reports/eval/reliability.png`, its data "
        "`reports/eval/reliability.csv` (`dvc plots show`).",
        "",
    ]


def _ood(scores: Mapping[str, Any], facts: CardFacts) -> list[str]:
    ood = facts.model.get("ood", {})
    out = ["## Out-of-distribution behaviour", ""]
    if "ood_threshold" not in scores:
        return [*out, "The model has no out-of-distribution detector.", ""]
    known_rows = [
        [_code(k), number(scores.get(k))]
        for k in ("ood_threshold", "test_rejected", "accuracy_known", "accuracy")
        if k in scores
    ]
    out += [
        f"Method: `{ood.get('method', '?')}` (evaluation/ood.py)"
        + (
            ", with the model's confidence (`ood.doubt`): an image's score is the lower of "
            "its two shares of validation images, those whose method score and those whose "
            "confidence are at most its own"
            if ood.get("doubt")
            else ""
        )
        + ". An image scoring below "
        "`ood_threshold` is called unknown. On the test split, which the detector never saw, "
        "`test_rejected` is the share of images it rejects, `accuracy_known` the accuracy on "
        "those it accepts, beside `accuracy` on all of them:",
        "",
        *_table(["metric", "value"], known_rows),
        "",
    ]
    if "ood_auroc" not in scores:
        return [
            *out,
            "Not measured on out-of-distribution images: `ood.sets` in params.yaml is empty.",
            "",
        ]
    pooled = [
        [_code(f"ood_{k}"), number(scores.get(f"ood_{k}")), number(scores.get(f"ood_{k}_msp"))]
        for k in ("auroc", "fpr_at_95_tpr", "rejected", "images")
    ]
    per_set = [
        [name, *(number(figures.get(c)) for c in SET_COLUMNS)]
        for name, figures in facts.ood_sets.items()
    ]
    return [
        *out,
        "Measured on images the model never saw, generated by evaluation/ood_sets.py (the "
        "sets `ood.sets` names), against the test split: `ood_auroc` is the probability that "
        "a test image scores above an out-of-distribution one; `ood_fpr_at_95_tpr` the share "
        "of out-of-distribution images accepted at the threshold that accepts ninety-five "
        "percent of the test images; `ood_rejected` the share rejected at the served "
        "threshold. Beside them, the same for the maximum softmax probability (Hendrycks "
        "and Gimpel), the usual baseline. All sets pooled:",
        "",
        *_table(["metric", "detector", "maximum softmax baseline"], pooled),
        "",
        "Per set (`reports/eval/ood.json`; `_msp`: the maximum softmax baseline):",
        "",
        *_table(["set", *map(_code, SET_COLUMNS)], per_set),
        "",
    ]


def _audit(audit: Mapping[str, Any] | None) -> list[str]:
    out = ["## Label audit", ""]
    if not audit:
        return [*out, "The audit stage's report (reports/audit/summary.json) was not found.", ""]
    if audit.get("too_small"):
        out += [f"Too few images to cross-validate: {audit['too_small']}.", ""]
    names = {
        "images": "training and validation images audited",
        "label_issues": "suspected label errors",
        "label_issue_rate": "share of images with a suspected label error",
        "outliers": "outliers",
        "near_duplicate_groups": "groups of near-duplicate images",
        "out_of_sample_accuracy": "cross-validated accuracy of the audit's own classifier",
    }
    rows = [
        [_code(k), text, str(audit[k])] for k, text in names.items() if audit.get(k) is not None
    ]
    return [
        *out,
        "Suspects among the training and validation images (`reports/audit/issues.csv`; "
        "`python -m image_classifier.audit accept` fixes labels):",
        "",
        *_table(["count", "what", "value"], rows),
        "",
    ]


def small_classes(counts: Mapping[str, Mapping[str, int]]) -> list[str]:
    """Classes with few training images: under SMALL_CLASS_IMAGES, or under SMALL_SHARE of
    the median class's."""
    train = counts.get("train", {})
    if not train:
        return []
    median = sorted(train.values())[len(train) // 2]
    limit = max(SMALL_CLASS_IMAGES, SMALL_SHARE * median)
    return [name for name, n in train.items() if n < limit]


def _limitations(scores: Mapping[str, Any], facts: CardFacts) -> list[str]:
    items = []
    if facts.refused:
        text = (
            f"**The network does not beat chance or the linear baseline on "
            f"`{facts.gate_metric}`** by `evaluate.baseline_margin` (see the Metrics table): "
            "the quality gate refuses it."
        )
        if facts.diagnosis:
            text += (
                f" The fit says {facts.diagnosis.get('case', '?')} "
                f"(`reports/train/metrics.json`): {facts.diagnosis.get('advice', '')}."
            )
        items.append(text)
    small = small_classes(facts.counts)
    if small:
        items.append(
            "Small classes, whose figures rest on few images and which the model learns "
            f"least well: {', '.join(_code(c) for c in small)}."
        )
    missing = [c for c in facts.model.get("classes", []) if not facts.counts.get("test", {}).get(c)]
    if missing:
        items.append(
            f"No test image of {', '.join(_code(c) for c in missing)}: nothing measures them."
        )
    if "ood_auroc" not in scores:
        items.append("The out-of-distribution detector was not measured (`ood.sets` is empty).")
    if scores.get("accuracy_known", 1.0) < scores.get("accuracy", 0.0):
        items.append(
            "The detector does not single out the model's mistakes: the accuracy on the images "
            "it accepts (`accuracy_known`) is below the accuracy on all of them."
        )
    items += [
        "The out-of-distribution figures are measured on generated images far from the "
        "classes; near misses (see Out-of-scope use) are not measured, and the detector "
        "catches fewer of them.",
        "Every figure comes from one test split drawn from the same folder as the training "
        "images: it says how the model does on more images like them, not on images from "
        "elsewhere. The smaller the test split (`n_test`), the wider their uncertainty.",
    ]
    return ["## Known limitations", "", *(f"- {item}" for item in items), ""]


def _versions(model: Mapping[str, Any], versions: Mapping[str, str]) -> list[str]:
    rows = [
        ["model", f"`{model.get('version', 'unknown')}`"],
        ["preprocessing", str(model.get("preprocessing_version", "?"))],
        *([name, f"`{v}`"] for name, v in versions.items()),
    ]
    return ["## Versions", "", *_table(["component", "version"], rows), ""]


def render(scores: Mapping[str, Any], facts: CardFacts) -> str:
    """The model card's Markdown."""
    model = facts.model
    lines = [
        f"# Model card: image classifier `{model.get('version', 'unknown')}`",
        "",
        f"A {model.get('architecture', '?')} network that tells "
        f"{len(model.get('classes', []))} classes of images apart, with calibrated "
        "probabilities and a “none of these” answer for images unlike its training data. "
        "Written by the evaluate stage (`dvc repro`) from `reports/metrics.json`; do not edit.",
        "",
        *_details(model, facts),
        *_use(model),
        *_classes(model, facts.counts),
        *_metrics(scores, facts.gate_metric),
        *_calibration(scores),
        *_ood(scores, facts),
        *_audit(facts.audit),
        *_limitations(scores, facts),
        *_versions(model, facts.versions),
    ]
    return front_matter(scores, model) + "\n" + "\n".join(lines)
