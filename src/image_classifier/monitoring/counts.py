"""What the web app has predicted, per model version: top-1 class x confidence-bucket counts,
and how many of the predictions the detector called unknown ("none of these").

Counts only (no images, no inputs), in the app's database (monitoring/database.py): a SQLite
file by default, PostgreSQL when DATABASE_URL is set, where every instance adds to one table.
A prediction never waits for the database: each worker adds its counts up in memory and a
timer writes them FLUSH_EVERY_S seconds after the first unwritten one (and when the worker
reads a profile or exits). A write that fails keeps the counts in memory and is retried every
RETRY_EVERY_S seconds, so an outage delays them. A worker that ends while the database is
down (recycled, or stopped on a deploy) spills its unwritten counts to a journal folder on
the machine, and the next worker that starts or writes there takes them over: each file is
claimed by one rename, so every count is written once. Only a worker killed outright, or one
with no writable journal, loses its unwritten counts (docs/operations.md#database).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import threading
import uuid
import weakref
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa

from image_classifier.monitoring.database import Database, DatabaseUnavailableError

BUCKETS = 10  # top-1 confidence in tenths: [0, 0.1), ..., [0.9, 1.0]
# Other workers see a worker's counts this much later at most; a worker killed outright
# (SIGKILL, OOM) loses at most this much of them.
FLUSH_EVERY_S = 1.0
RETRY_EVERY_S = 5.0

log = logging.getLogger(__name__)

UPSERT = sa.text(
    "INSERT INTO predictions (model_version, label, bucket, count) "
    "VALUES (:version, :label, :bucket, :n) ON CONFLICT (model_version, label, bucket) "
    "DO UPDATE SET count = predictions.count + excluded.count"
)
UPSERT_UNKNOWN = sa.text(
    "INSERT INTO unknown_predictions (model_version, count) VALUES (:version, :n) "
    "ON CONFLICT (model_version) DO UPDATE SET count = unknown_predictions.count + excluded.count"
)


def bucket(confidence: float) -> int:
    return min(int(confidence * BUCKETS), BUCKETS - 1)


@dataclass
class Profile:
    """A distribution of predictions: counts per top-1 class and per confidence bucket, and
    how many were unknown. Every prediction counts under its top-1 class, the unknown ones
    too (their closest class); `unknown` is None when the source does not count them."""

    labels: dict[str, int] = field(default_factory=dict)
    confidence: list[int] = field(default_factory=lambda: [0] * BUCKETS)
    unknown: int | None = 0

    @property
    def total(self) -> int:
        return sum(self.labels.values())

    @property
    def unknown_rate(self) -> float | None:
        """The share of predictions the detector called unknown; None when not counted or
        when there are no predictions."""
        if self.unknown is None or not self.total:
            return None
        return self.unknown / self.total

    def add(self, label: str, confidence: float, count: int = 1, known: bool = True) -> None:
        self.labels[label] = self.labels.get(label, 0) + count
        self.confidence[bucket(confidence)] += count
        if not known and self.unknown is not None:
            self.unknown += count

    def to_json(self) -> dict:
        return {
            "total": self.total,
            "labels": self.labels,
            "confidence": self.confidence,
            "unknown": self.unknown,
            "unknown_rate": self.unknown_rate,
        }

    @classmethod
    def from_json(cls, raw: dict) -> Profile:
        confidence = [int(c) for c in raw["confidence"]]
        if len(confidence) != BUCKETS:
            raise ValueError(f"expected {BUCKETS} confidence buckets, got {len(confidence)}")
        # An app of an earlier release sends no "unknown": not counted, not zero.
        unknown = raw.get("unknown")
        return cls(
            {str(k): int(v) for k, v in raw["labels"].items()},
            confidence,
            None if unknown is None else int(unknown),
        )


# Stores still open: gunicorn workers leave through sys.exit (max_requests, SIGTERM) without
# closing theirs, and their last counts are written then. Weak: an atexit entry per store
# would keep every store (and its connection) alive until the process ends.
_OPEN: weakref.WeakSet[DriftStore] = weakref.WeakSet()


@atexit.register
def _close_open_stores() -> None:
    for store in list(_OPEN):
        store.close()


class DriftStore:
    """Buffered prediction counts over a Database; one per web worker."""

    def __init__(
        self, db: Database, flush_every_s: float = FLUSH_EVERY_S, journal: Path | None = None
    ) -> None:
        self.db = db
        self.flush_every_s = flush_every_s
        self.journal = journal
        self._pending: Counter[tuple[str, str, int]] = Counter()
        self._pending_unknown: Counter[str] = Counter()  # by model version
        self._timer: threading.Timer | None = None
        self._failing = False
        self._closed = False
        self._lock = threading.Lock()  # guards the fields above; never held over a write
        self._writing = threading.Lock()  # one write at a time; close() waits for it
        _OPEN.add(self)
        self._take_over()

    def record(self, version: str, predictions: Iterable[tuple[str, float, bool]]) -> None:
        """Count predictions: (top-1 class, its probability, known). A pair (class,
        probability) counts as known."""
        with self._lock:
            for label, conf, *known in predictions:
                self._pending[(version, label, bucket(conf))] += 1
                if known and not known[0]:
                    self._pending_unknown[version] += 1
            self._schedule(self.flush_every_s)

    def _schedule(self, delay: float) -> None:
        """Start the timer unless one is pending; call with _lock held. Counts are written on
        time even if this worker gets no other prediction."""
        if self._timer is None and self._pending and not self._closed:
            self._timer = threading.Timer(delay, self._timed_flush)
            self._timer.daemon = True  # never holds up a worker's exit; atexit writes
            self._timer.start()

    def _timed_flush(self) -> None:
        with self._lock:
            self._timer = None
        with contextlib.suppress(DatabaseUnavailableError):  # flush() logged and rescheduled
            self.flush()

    def flush(self) -> None:
        """Write the counts held in memory. On failure they stay there, a retry is scheduled,
        and this raises DatabaseUnavailableError."""
        with self._writing:
            with self._lock:
                batch, self._pending = self._pending, Counter()
                unknown, self._pending_unknown = self._pending_unknown, Counter()
            if not batch:
                return
            rows = [
                {"version": v, "label": k, "bucket": b, "n": n} for (v, k, b), n in batch.items()
            ]
            unknown_rows = [{"version": v, "n": n} for v, n in unknown.items()]
            try:
                with self.db.begin() as conn:  # both or neither
                    conn.execute(UPSERT, rows)
                    if unknown_rows:
                        conn.execute(UPSERT_UNKNOWN, unknown_rows)
            except DatabaseUnavailableError as exc:
                with self._lock:
                    self._pending.update(batch)
                    self._pending_unknown.update(unknown)
                    first, self._failing = not self._failing, True
                    if self._timer is not None:  # whatever it was set for, retry on time
                        self._timer.cancel()
                        self._timer = None
                    self._schedule(RETRY_EVERY_S)
                if first:
                    log.warning("drift counts kept in memory, not saved: %s", exc)
                raise
        if self._failing:
            self._failing = False
            log.warning("drift counts saved again to %s", self.db.name)
        self._take_over()

    def _take_over(self) -> None:
        """Add the counts that ended workers spilled to the journal to this worker's own,
        and schedule their write. A file is claimed by renaming it: one worker gets it."""
        with self._lock:
            if self._closed:  # an ending worker takes nothing over: it could not write it
                return
        if self.journal is None or not self.journal.is_dir():
            return
        taken = 0
        for path in sorted(self.journal.glob("*.json")):
            claimed = path.with_name(f"{path.stem}.{os.getpid()}.{uuid.uuid4().hex}.taken")
            try:
                path.rename(claimed)
            except FileNotFoundError:
                continue  # another worker claimed it first
            try:
                raw = json.loads(claimed.read_text(encoding="utf-8"))
                counts = [(str(v), str(k), int(b), int(n)) for v, k, b, n in raw["counts"]]
                unknown = [(str(v), int(n)) for v, n in raw["unknown"]]
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.error("drift journal %s unreadable, left as %s: %s", path, claimed, exc)
                continue
            with self._lock:
                for version, label, b, n in counts:
                    self._pending[(version, label, b)] += n
                for version, n in unknown:
                    self._pending_unknown[version] += n
                self._schedule(self.flush_every_s)
            claimed.unlink()
            taken += sum(n for *_, n in counts)
        if taken:
            log.warning("drift counts taken over from the journal: %d predictions", taken)

    def _spill(self) -> bool:
        """Write the unwritten counts to a new journal file (temp file, then rename); False
        when there is no writable journal."""
        if self.journal is None:
            return False
        raw = {
            "counts": [[v, k, b, n] for (v, k, b), n in self._pending.items()],
            "unknown": [[v, n] for v, n in self._pending_unknown.items()],
        }
        name = f"{os.getpid()}-{uuid.uuid4().hex}"
        try:
            self.journal.mkdir(mode=0o700, parents=True, exist_ok=True)
            tmp = self.journal / f".{name}.tmp"
            tmp.write_text(json.dumps(raw), encoding="utf-8")
            tmp.rename(self.journal / f"{name}.json")
        except OSError as exc:
            log.warning("drift journal %s not writable: %s", self.journal, exc)
            return False
        return True

    def profile(self, version: str) -> Profile:
        """The counts for a version: every worker's written ones and this worker's own.
        DatabaseUnavailableError when the database cannot be read."""
        # The database may still answer the read; if not, that raises below.
        with contextlib.suppress(DatabaseUnavailableError):
            self.flush()
        with self.db.read() as conn:
            rows = conn.execute(
                sa.text("SELECT label, bucket, count FROM predictions WHERE model_version = :v"),
                {"v": version},
            ).all()
            unknown = conn.execute(
                sa.text("SELECT count FROM unknown_predictions WHERE model_version = :v"),
                {"v": version},
            ).scalar()
        profile = Profile(unknown=int(unknown or 0))
        for label, b, count in rows:
            profile.labels[label] = profile.labels.get(label, 0) + count
            profile.confidence[b] += count
        return profile

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            _OPEN.discard(self)
        try:
            self.flush()  # waits for a write the timer may have begun
        except DatabaseUnavailableError:
            held = sum(self._pending.values())
            if self._spill():
                log.warning("drift counts kept in %s at exit: %d predictions", self.journal, held)
            else:
                log.warning("drift counts lost at exit: %d predictions not saved", held)
