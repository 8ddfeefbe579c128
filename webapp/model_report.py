"""What the model page shows: the evaluate and export stages' reports, read once per worker.

The files (reports/metrics.json, reports/export.json, reports/eval/class_report.csv,
confusion.png, misclassified.png, evaluated_model.json) ship with the model in the deploy
bundle and the Docker image. They are shown only for the model they describe: the evaluate
stage records the version it scored, and a mismatch says so instead of showing another
model's numbers.
"""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from image_classifier import config

log = logging.getLogger(__name__)

# Relative to the reports folder; the deploy bundle and the Dockerfile copy exactly these.
FILES = (
    "metrics.json",
    "export.json",
    "eval/class_report.csv",
    "eval/confusion.png",
    "eval/misclassified.png",
    f"eval/{config.EVALUATED_MODEL_FILE}",
    "audit/summary.json",  # counts only: the app ships no training image
)
FIGURES = {"confusion": "eval/confusion.png", "misclassified": "eval/misclassified.png"}
HEADLINE = ("accuracy", "balanced_accuracy", "f1_macro")


@dataclass(frozen=True)
class ModelReport:
    """Test-split evaluation of one model version; `problem` says why parts are missing."""

    model_version: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    export: dict[str, Any] = field(default_factory=dict)
    classes: list[dict[str, str]] = field(default_factory=list)
    figures: dict[str, bytes] = field(default_factory=dict)
    problem: str = ""
    warning: str = ""  # evaluate's: the model does not beat the linear baseline
    audit: dict[str, Any] = field(default_factory=dict)  # the audit stage's counts, if shipped

    def headline(self) -> list[dict[str, Any]]:
        """Rows of (metric, model, linear baseline, majority baseline) for the page's table."""
        rows = []
        for name in HEADLINE:
            if name not in self.metrics:
                continue
            rows.append(
                {
                    "metric": name,
                    "model": self.metrics[name],
                    "linear": self.metrics.get(f"baseline_linear_{name}"),
                    "majority": self.metrics.get(f"baseline_majority_{name}"),
                }
            )
        return rows


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def load_report(reports_dir: Path, served_version: str | None) -> ModelReport:
    """The reports for the served model, or an empty one whose `problem` explains why."""
    try:
        evaluated = _read_json(reports_dir / "eval" / config.EVALUATED_MODEL_FILE)
        metrics = _read_json(reports_dir / "metrics.json")
        with (reports_dir / "eval" / "class_report.csv").open(encoding="utf-8") as fh:
            classes = list(csv.DictReader(fh))
    except (OSError, ValueError) as exc:
        log.warning("model page: no evaluation reports in %s (%s)", reports_dir, exc)
        return ModelReport(problem=f"no evaluation reports were deployed with this model ({exc})")
    version = str(evaluated.get("model_version", ""))
    if served_version is not None and version != served_version:
        return ModelReport(
            model_version=version,
            problem=f"the deployed reports describe model {version}, not the served model "
            f"{served_version}: re-run `dvc repro` and deploy again",
        )
    export_path = reports_dir / "export.json"
    export = _read_json(export_path) if export_path.is_file() else {}
    figures = {}
    for name, rel in FIGURES.items():
        path = reports_dir / rel
        if path.is_file():
            figures[name] = path.read_bytes()
    warning = str(evaluated.get("warning") or "")
    audit_path = reports_dir / "audit" / "summary.json"
    audit = _read_json(audit_path) if audit_path.is_file() else {}
    return ModelReport(version, metrics, export, classes, figures, warning=warning, audit=audit)
