"""Drift statistics: how far live predictions have moved from the test split's.

Pure functions over two Profiles (monitoring/counts.py): the population stability index (PSI)
of the predicted classes, the PSI of the top-1 confidence histogram, the shift of the mean
confidence, and the rise of the unknown rate (the share of predictions the out-of-distribution
detector calls "none of these"), judged against params.yaml `drift:`.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from image_classifier.errors import DataError, MissingFileError
from image_classifier.monitoring.counts import BUCKETS, Profile
from image_classifier.params import DriftParams

EPS = 1e-4  # floor for empty bins, so PSI stays finite


def psi(expected: Sequence[float], actual: Sequence[float]) -> list[float]:
    """Per-bin PSI terms (actual - expected) * ln(actual / expected) of two count vectors."""
    e_total, a_total = sum(expected) or 1, sum(actual) or 1
    terms = []
    for e, a in zip(expected, actual, strict=True):
        pe, pa = max(e / e_total, EPS), max(a / a_total, EPS)
        terms.append((pa - pe) * math.log(pa / pe))
    return terms


# Pseudo-count added to every bin (Jeffreys' prior) before the PSI that is judged: an empty
# live bin otherwise counts as ln(share / EPS), which dominates with many classes.
SMOOTHING = 0.5


def corrected_psi(expected: Sequence[float], actual: Sequence[float]) -> float:
    """PSI with the part that sampling alone explains taken out, >= 0.

    Two samples of one distribution over K bins, of n_ref and n_live items, have an expected
    PSI of about (K - 1)(1/n_ref + 1/n_live): with 45 classes, 269 reference and 200 live
    predictions that is 0.39, over the usual 0.2 threshold on unchanged traffic. Measured with
    tests/test_drift.py's simulation: the plain PSI flagged 100% of unchanged 45-class samples;
    this flags under 1%, and still flags a 25% shift of traffic to one class."""
    # Only bins either sample uses count (a confident model fills 1-2 of 10 confidence bins).
    pairs = [(e, a) for e, a in zip(expected, actual, strict=True) if e or a]
    expected, actual = [e for e, _ in pairs], [a for _, a in pairs]
    k = len(pairs)
    n_ref, n_live = sum(expected), sum(actual)
    if not k or not n_ref or not n_live:
        return 0.0
    pe = [(e + SMOOTHING) / (n_ref + SMOOTHING * k) for e in expected]
    pa = [(a + SMOOTHING) / (n_live + SMOOTHING * k) for a in actual]
    value = sum((a - e) * math.log(a / e) for e, a in zip(pe, pa, strict=True))
    return max(0.0, value - (k - 1) * (1 / n_ref + 1 / n_live))


def mean_confidence(histogram: Sequence[int]) -> float:
    """Mean top-1 confidence estimated from bucket midpoints (same estimate on both sides)."""
    total = sum(histogram)
    mids = [(i + 0.5) / BUCKETS for i in range(BUCKETS)]
    return sum(m * n for m, n in zip(mids, histogram, strict=True)) / total if total else 0.0


@dataclass(frozen=True)
class DriftReport:
    rows: list[tuple[str, float, float, float]]  # class, expected share, live share, PSI term
    class_psi: float
    confidence_psi: float
    confidence_shift: float  # live mean - reference mean
    live_total: int
    problems: list[str]
    enough_data: bool
    # Share of predictions called unknown: on the test split (or the detector's design rate,
    # 1 - ood.accept) and live; None when not known.
    reference_unknown_rate: float | None = None
    live_unknown_rate: float | None = None
    reference_unknown_source: str = ""

    @property
    def drifted(self) -> bool:
        return self.enough_data and bool(self.problems)


def compare(
    reference: Profile,
    live: Profile,
    params: DriftParams,
    design_unknown_rate: float | None = None,
) -> DriftReport:
    """Live predictions against the reference's. The reference unknown rate is the
    reference profile's own when it counts unknowns, else `design_unknown_rate`."""
    classes = sorted(set(reference.labels) | set(live.labels))
    expected = [reference.labels.get(c, 0) for c in classes]
    actual = [live.labels.get(c, 0) for c in classes]
    terms = psi(expected, actual)
    e_total, a_total = sum(expected) or 1, sum(actual) or 1
    rows = [
        (c, e / e_total, a / a_total, t)
        for c, e, a, t in zip(classes, expected, actual, terms, strict=True)
    ]
    # Judged on the bias-corrected PSI; the rows show each class's plain PSI term.
    class_psi = corrected_psi(expected, actual)
    confidence_psi = corrected_psi(reference.confidence, live.confidence)
    shift = mean_confidence(live.confidence) - mean_confidence(reference.confidence)
    problems = []
    if class_psi > params.max_class_psi:
        problems.append(f"class PSI {class_psi:.3f} > {params.max_class_psi}")
    if confidence_psi > params.max_confidence_psi:
        problems.append(f"confidence PSI {confidence_psi:.3f} > {params.max_confidence_psi}")
    if -shift > params.max_confidence_drop:
        problems.append(f"mean confidence fell {-shift:.3f} > {params.max_confidence_drop}")
    ref_rate, source = reference.unknown_rate, "test split"
    if ref_rate is None and design_unknown_rate is not None:
        ref_rate, source = design_unknown_rate, "design: 1 - ood.accept"
    live_rate = live.unknown_rate
    if ref_rate is not None and live_rate is not None:
        rise = live_rate - ref_rate
        if rise > params.max_unknown_rate_increase:
            problems.append(
                f"unknown rate {live_rate:.1%} vs {ref_rate:.1%} ({source}): "
                f"+{rise:.3f} > {params.max_unknown_rate_increase}"
            )
    enough = live.total >= params.min_samples
    return DriftReport(
        rows,
        class_psi,
        confidence_psi,
        shift,
        live.total,
        problems,
        enough,
        ref_rate,
        live_rate,
        source if ref_rate is not None else "",
    )


TRUE, FALSE = ("true", "1", "yes"), ("false", "0", "no")


def _flag(text: str, where: str) -> bool:
    value = text.strip().lower()
    if value in TRUE or value in FALSE:
        return value in TRUE
    raise DataError(f"{where}: known must be true or false, got {text!r}")


def reference_profile(predictions_csv: Path) -> Profile:
    """The model's own predictions on the test split, as the evaluate stage wrote them; with
    its unknown count when the file has a `known` column. DataError names the file and line
    of anything it cannot read."""
    if not predictions_csv.is_file():
        raise MissingFileError(f"{predictions_csv} not found: the evaluate stage writes it")
    with predictions_csv.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        columns = reader.fieldnames or ()
        missing = [c for c in ("predicted", "confidence") if c not in columns]
        if missing:
            raise DataError(f"{predictions_csv}: no column {', '.join(missing)}")
        profile = Profile(unknown=0 if "known" in columns else None)
        for line, row in enumerate(reader, start=2):
            where = f"{predictions_csv}:{line}"
            known = profile.unknown is None or _flag(row["known"] or "", where)
            try:
                confidence = float(row["confidence"])
            except (TypeError, ValueError):
                raise DataError(
                    f"{where}: confidence {row['confidence']!r} is not a number"
                ) from None
            profile.add(row["predicted"], confidence, known=known)
    return profile


def format_report(report: DriftReport, version: str) -> str:
    lines = [
        f"model {version}: {report.live_total} live predictions",
        f"{'class':<24} {'test split':>10} {'live':>8} {'PSI term':>9}",
    ]
    lines += [f"{c[:24]:<24} {e:>10.1%} {a:>8.1%} {t:>9.4f}" for c, e, a, t in report.rows]
    lines.append(
        f"class PSI {report.class_psi:.4f}; confidence PSI {report.confidence_psi:.4f}; "
        f"mean confidence shift {report.confidence_shift:+.3f}"
    )
    ref, live = report.reference_unknown_rate, report.live_unknown_rate
    if live is None:
        why = "no live predictions" if not report.live_total else "not counted by the app"
        lines.append(f"unknown rate (none of these): {why}")
    elif ref is None:
        lines.append(f"unknown rate (none of these) {live:.1%} live; no reference to compare")
    else:
        lines.append(
            f"unknown rate (none of these) {live:.1%} live vs {ref:.1%} "
            f"({report.reference_unknown_source}); change {live - ref:+.3f}"
        )
    if not report.enough_data:
        lines.append("not enough live predictions to judge yet")
    elif report.problems:
        lines.append("DRIFT: " + "; ".join(report.problems))
    else:
        lines.append("no drift above the thresholds")
    return "\n".join(lines)
