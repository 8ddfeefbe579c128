"""What the web app has predicted, per model version: top-1 class x confidence-bucket counts.

A small SQLite file (no images, no inputs: counts only), so a restart loses nothing.
WAL mode and a busy timeout let several gunicorn workers write to it at once. Each worker
adds its counts up in memory and a timer writes them FLUSH_EVERY_S seconds after the first
unwritten one (and when the worker reads a profile or exits), because one SQLite transaction a
request would cost a noticeable share of a small model's prediction.
"""

from __future__ import annotations

import atexit
import logging
import sqlite3
import threading
import weakref
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

BUCKETS = 10  # top-1 confidence in tenths: [0, 0.1), ..., [0.9, 1.0]
# Other workers see a worker's counts this much later at most; a worker killed outright
# (SIGKILL, OOM) loses at most this much of them.
FLUSH_EVERY_S = 1.0

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS predictions (
    model_version TEXT NOT NULL,
    label TEXT NOT NULL,
    bucket INTEGER NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (model_version, label, bucket)
)
"""


def bucket(confidence: float) -> int:
    return min(int(confidence * BUCKETS), BUCKETS - 1)


@dataclass
class Profile:
    """A distribution of predictions: counts per top-1 class and per confidence bucket."""

    labels: dict[str, int] = field(default_factory=dict)
    confidence: list[int] = field(default_factory=lambda: [0] * BUCKETS)

    @property
    def total(self) -> int:
        return sum(self.labels.values())

    def add(self, label: str, confidence: float, count: int = 1) -> None:
        self.labels[label] = self.labels.get(label, 0) + count
        self.confidence[bucket(confidence)] += count

    def to_json(self) -> dict:
        return {"total": self.total, "labels": self.labels, "confidence": self.confidence}

    @classmethod
    def from_json(cls, raw: dict) -> Profile:
        confidence = [int(c) for c in raw["confidence"]]
        if len(confidence) != BUCKETS:
            raise ValueError(f"expected {BUCKETS} confidence buckets, got {len(confidence)}")
        return cls({str(k): int(v) for k, v in raw["labels"].items()}, confidence)


# Stores still open: gunicorn workers leave through sys.exit (max_requests, SIGTERM) without
# closing theirs, and their last counts are written then. Weak: an atexit entry per store
# would keep every store (and its connection) alive until the process ends.
_OPEN: weakref.WeakSet[DriftStore] = weakref.WeakSet()


@atexit.register
def _close_open_stores() -> None:
    for store in list(_OPEN):
        store.close()


class DriftStore:
    def __init__(self, path: str | Path, flush_every_s: float = FLUSH_EVERY_S) -> None:
        self.path = Path(path)
        self.flush_every_s = flush_every_s
        self._pending: Counter[tuple[str, str, int]] = Counter()
        self._timer: threading.Timer | None = None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, timeout=5.0, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(SCHEMA)
        self._db.commit()
        _OPEN.add(self)

    def record(self, version: str, predictions: Iterable[tuple[str, float]]) -> None:
        with self._lock:
            self._pending.update((version, label, bucket(conf)) for label, conf in predictions)
            if self._pending and self._timer is None:
                # Written on time even if this worker gets no other prediction.
                self._timer = threading.Timer(self.flush_every_s, self._timed_flush)
                self._timer.daemon = True  # never holds up a worker's exit; atexit writes
                self._timer.start()

    def _timed_flush(self) -> None:
        with self._lock:
            self._timer = None
            try:
                self._flush()
            except sqlite3.Error as exc:  # kept in memory, tried again with the next count
                log.warning("drift counts not saved: %s", exc)

    def _flush(self) -> None:
        if not self._pending:
            return
        rows = [(*key, n) for key, n in self._pending.items()]
        with self._db:
            self._db.executemany(
                "INSERT INTO predictions VALUES (?, ?, ?, ?) ON CONFLICT "
                "(model_version, label, bucket) DO UPDATE SET count = count + excluded.count",
                rows,
            )
        self._pending.clear()  # only once written: a failed write is retried next time

    def profile(self, version: str) -> Profile:
        """The counts for a version: every worker's written ones and this worker's own."""
        with self._lock:
            try:
                self._flush()
            except sqlite3.Error as exc:  # the others' counts can still be read
                log.warning("drift counts not saved: %s", exc)
            rows = self._db.execute(
                "SELECT label, bucket, count FROM predictions WHERE model_version = ?", (version,)
            ).fetchall()
        profile = Profile()
        for label, b, count in rows:
            profile.labels[label] = profile.labels.get(label, 0) + count
            profile.confidence[b] += count
        return profile

    def close(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            _OPEN.discard(self)
            try:
                self._flush()
            finally:
                self._db.close()
