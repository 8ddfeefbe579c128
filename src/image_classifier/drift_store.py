"""What the web app has predicted, per model version: top-1 class x confidence-bucket counts.

A small SQLite file (no images, no inputs: counts only), so a restart loses nothing.
WAL mode and a busy timeout let several gunicorn workers write to it at once.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

BUCKETS = 10  # top-1 confidence in tenths: [0, 0.1), ..., [0.9, 1.0]

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


class DriftStore:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, timeout=5.0, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(SCHEMA)
        self._db.commit()

    def record(self, version: str, predictions: Iterable[tuple[str, float]]) -> None:
        rows = [(version, label, bucket(conf)) for label, conf in predictions]
        if not rows:
            return
        with self._lock, self._db:
            self._db.executemany(
                "INSERT INTO predictions VALUES (?, ?, ?, 1) ON CONFLICT "
                "(model_version, label, bucket) DO UPDATE SET count = count + 1",
                rows,
            )

    def profile(self, version: str) -> Profile:
        with self._lock:
            rows = self._db.execute(
                "SELECT label, bucket, count FROM predictions WHERE model_version = ?", (version,)
            ).fetchall()
        profile = Profile()
        for label, b, count in rows:
            profile.labels[label] = profile.labels.get(label, 0) + count
            profile.confidence[b] += count
        return profile

    def close(self) -> None:
        self._db.close()
