"""The app's database and the two stores on it: drift counts and feedback.

DATABASE_URL (PostgreSQL; Heroku Postgres sets it) wins; otherwise a SQLite file at $DRIFT_DB or
serve.database; with neither, nothing is kept. A database that cannot be reached at start does
not stop the app: it serves predictions, keeps drift counts in memory and retries; the drift
and feedback routes answer 503 with the reason until the database answers.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from image_classifier.monitoring.counts import DriftStore
from image_classifier.monitoring.database import Database, DatabaseUnavailableError, app_database
from image_classifier.monitoring.feedback_store import FeedbackStore
from image_classifier.params import ServeParams

log = logging.getLogger(__name__)


@dataclass
class Storage:
    db: Database | None
    drift: DriftStore | None
    feedback: FeedbackStore | None
    off: str  # why there is no database, when db is None


def journal_dir(db: Database) -> Path:
    """Where a worker that ends while the database is down leaves its drift counts for the
    next one (monitoring/counts.py): $DRIFT_JOURNAL, else a folder per database in the
    machine's temp folder."""
    if os.environ.get("DRIFT_JOURNAL"):
        return Path(os.environ["DRIFT_JOURNAL"])
    name = db.name
    if db.dialect == "sqlite" and db.url.database:
        # by the file itself: `var/app.sqlite` of two checkouts are two databases
        name = str(Path(db.url.database).resolve())
    key = hashlib.sha256(name.encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / "image-classifier-drift" / key


def open_storage(settings: ServeParams) -> Storage:
    target = app_database(settings.database)
    if not target:
        return Storage(None, None, None, "no database: DATABASE_URL and serve.database are empty")
    try:
        db = Database(target, settings.db_timeout_s)
    except ValueError as exc:  # a malformed DATABASE_URL: say so, and serve without it
        log.error("no database: %s", exc)
        return Storage(None, None, None, f"no database: {exc}")
    try:
        db.ensure_schema()
        log.info("database: %s", db.name)
    except DatabaseUnavailableError as exc:
        log.warning(
            "database unavailable at start (%s): predictions are served, drift counts wait in "
            "memory, feedback and /api/v1/drift answer 503 until it answers",
            exc,
        )
    feedback = FeedbackStore(
        db,
        settings.feedback_max_items,
        settings.feedback_retention_days,
        settings.feedback_max_mb,
    )
    # Retention holds even when no feedback arrives, or feedback was turned off since: every
    # worker start purges too.
    with contextlib.suppress(DatabaseUnavailableError):
        feedback.purge()
    drift = DriftStore(db, journal=journal_dir(db))
    return Storage(db, drift, feedback if settings.feedback else None, "")
