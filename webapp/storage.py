"""The app's database and the two stores on it: drift counts and feedback.

DATABASE_URL (PostgreSQL; Heroku Postgres sets it) wins; otherwise a SQLite file at $DRIFT_DB or
serve.drift_db; with neither, nothing is kept. A database that cannot be reached at start does
not stop the app: it serves predictions, keeps drift counts in memory and retries; the drift
and feedback routes answer 503 with the reason until the database answers.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass

from image_classifier.monitoring.counts import DriftStore
from image_classifier.monitoring.database import Database, DatabaseUnavailableError
from image_classifier.monitoring.feedback import FeedbackStore
from image_classifier.params import ServeParams

log = logging.getLogger(__name__)


@dataclass
class Storage:
    db: Database | None
    drift: DriftStore | None
    feedback: FeedbackStore | None
    off: str  # why there is no database, when db is None


def database_target(settings: ServeParams) -> str:
    return os.environ.get("DATABASE_URL") or os.environ.get("DRIFT_DB", settings.drift_db)


def open_storage(settings: ServeParams) -> Storage:
    target = database_target(settings)
    if not target:
        return Storage(None, None, None, "no database: DATABASE_URL and serve.drift_db are empty")
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
    return Storage(db, DriftStore(db), feedback if settings.feedback else None, "")
