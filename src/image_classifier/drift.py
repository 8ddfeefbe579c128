"""Has what the web app sees drifted away from the test split?

    python -m image_classifier.drift [--db var/app.sqlite | --database-url URL | --url APP]
                                     [--version V]

Without --db, --database-url or --url it reads the database the web app uses: $DATABASE_URL,
else $DRIFT_DB, else serve.database.

Compares the live distribution of predictions for one model version (default: the exported
model's) with the same model's predictions on the test split (reports/eval/predictions.csv):
the population stability index (PSI) of the predicted classes, the PSI of the top-1 confidence
histogram, the shift of the mean confidence, and the rise of the unknown rate (the share the
out-of-distribution detector calls "none of these"; the test split's rate comes from
predictions.csv's `known` column, or else is the detector's design rate, 1 - ood.accept in
saved_models/model.json). Prints a table; exits 1 when a threshold in params.yaml `drift:` is
crossed (so a scheduled job can open a retraining issue), 0 otherwise, including when there
are too few live predictions to judge.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from image_classifier import config
from image_classifier.errors import DataError, MissingFileError
from image_classifier.monitoring.counts import DriftStore, Profile
from image_classifier.monitoring.database import (
    Database,
    DatabaseUnavailableError,
    app_database,
)
from image_classifier.monitoring.stats import compare, format_report, reference_profile
from image_classifier.params import ParamsError, load_params


def fetch_profile(url: str, version: str | None) -> tuple[str, Profile]:
    """From a running web app; without a version, the one it serves. DataError when the app
    cannot be reached or does not answer with a drift profile."""
    query = f"{url.rstrip('/')}/api/v1/drift"
    if version:
        query += f"?version={urllib.parse.quote(version)}"
    try:
        with urllib.request.urlopen(query, timeout=30) as res:
            body = json.loads(res.read())
    except OSError as exc:  # urllib's URLError and HTTPError, timeouts
        raise DataError(f"{query}: {getattr(exc, 'reason', exc)}") from None
    except ValueError as exc:
        raise DataError(f"{query}: not JSON: {exc}") from None
    try:
        return str(body["model_version"]), Profile.from_json(body["profile"])
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"{query}: not a drift profile ({type(exc).__name__}: {exc})") from None


def read_profile(target: str, version: str) -> Profile:
    """From the app's database: a DATABASE_URL, or a SQLite file (which must exist)."""
    if "://" not in target and not Path(target).is_file():
        raise MissingFileError(
            f"no drift database at {target} (serve.database: the web app writes it)"
        )
    db = Database(target, timeout_s=10.0)
    try:
        return DriftStore(db).profile(version)
    finally:
        db.close()


def read_model_card(model_card: Path) -> dict:
    """model.json as a dict; DataError when it is not one."""
    try:
        card = json.loads(model_card.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MissingFileError(f"{model_card} not found: the export stage writes it") from None
    except ValueError as exc:
        raise DataError(f"{model_card}: not JSON: {exc}") from None
    if not isinstance(card, dict):
        raise DataError(f"{model_card}: not a model card")
    return card


def design_unknown_rate(model_card: Path) -> float | None:
    """1 - ood.accept of model.json: the share of in-distribution images the detector's
    threshold was set to reject at most. None without a model.json or a detector."""
    if not model_card.is_file():
        return None
    accept = read_model_card(model_card).get("ood", {}).get("accept")
    if accept is None:
        return None
    if not isinstance(accept, int | float):
        raise DataError(f"{model_card}: ood.accept {accept!r} is not a number")
    return 1.0 - float(accept)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m image_classifier.drift", description=__doc__)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--db", type=Path, help="the web app's SQLite file (serve.database)")
    source.add_argument(
        "--database-url", help="the web app's PostgreSQL database (its DATABASE_URL)"
    )
    source.add_argument("--url", help="a running web app (reads its /api/v1/drift)")
    parser.add_argument(
        "--version", help="model version (default: the served one, or saved_models/model.json's)"
    )
    parser.add_argument("--reference", type=Path, default=config.PREDICTIONS_FILE)
    parser.add_argument(
        "--model-card",
        type=Path,
        default=config.MODEL_CARD,
        help="the exported model.json: its version, and its detector's design unknown rate",
    )
    parser.add_argument("--params", type=Path, default=config.PARAMS_FILE)
    args = parser.parse_args(argv)
    try:
        params = load_params(args.params)
        reference = reference_profile(args.reference)
        # The test split's rate when predictions.csv has it, else the detector's design rate.
        design = design_unknown_rate(args.model_card) if reference.unknown is None else None
        if args.url:
            version, live = fetch_profile(args.url, args.version)
        else:
            version = args.version or str(read_model_card(args.model_card).get("version", ""))
            if not version:
                raise DataError(f"{args.model_card} names no version: give --version")
            target = app_database(params.serve.database, args.database_url, args.db)
            live = read_profile(target, version)
    except (ParamsError, DataError, MissingFileError, DatabaseUnavailableError) as exc:
        print(f"drift: {exc}", file=sys.stderr)
        return 2
    report = compare(reference, live, params.drift, design)
    print(format_report(report, version))
    return 1 if report.drifted else 0


if __name__ == "__main__":
    sys.exit(main())
