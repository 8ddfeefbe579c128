"""Feedback: images people say the model got wrong, with the label they gave, for review.

Stored per item: the image bytes, their SHA-256, the given label (a class or NONE), the
model's top-1 class and probability, the model version, the time, and the review status
(pending, accepted, rejected). No IP address, no file name. One row per (image, label): the
same image sent again with the same label is stored once. Rejecting an item deletes its image
at once (the row stays, so the same image and label are not stored again); pending and
accepted items count against the store's limits until retention deletes them.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

import sqlalchemy as sa

from image_classifier.monitoring.database import FEEDBACK_LOCK, Database

NONE = "none"  # "none of these classes"
MAX_ID = 2**63 - 1  # ids are 64-bit; a larger number names no item (and overflows drivers)
STATUSES = ("pending", "accepted", "rejected")
_COLUMNS = "id, sha256, label, predicted, probability, model_version, created_at, status"


class StoreFullError(RuntimeError):
    """The store holds its maximum number of items; review and export to make room."""


@dataclass(frozen=True)
class Item:
    id: int
    sha256: str
    label: str
    predicted: str
    probability: float
    model_version: str
    created_at: float
    status: str

    def to_json(self) -> dict:
        return {
            "id": self.id,
            "sha256": self.sha256,
            "label": self.label,
            "predicted": self.predicted,
            "probability": self.probability,
            "model_version": self.model_version,
            "created_at": self.created_at,
            "status": self.status,
        }


def _item(row) -> Item:
    return Item(int(row[0]), row[1], row[2], row[3], float(row[4]), row[5], float(row[6]), row[7])


class FeedbackStore:
    def __init__(
        self, db: Database, max_items: int, retention_days: float, max_mb: float = 1e9
    ) -> None:
        self.db = db
        self.max_items = max_items
        self.max_bytes = int(max_mb * 1024 * 1024)
        self.retention_s = retention_days * 86400.0

    def add(
        self,
        image: bytes,
        label: str,
        predicted: str,
        probability: float,
        model_version: str,
        now: float | None = None,
    ) -> tuple[Item, bool]:
        """Store an item; (the item, True if new). StoreFullError when the store is full."""
        now = time.time() if now is None else now
        digest = hashlib.sha256(image).hexdigest()
        with self.db.begin() as conn:
            if conn.dialect.name == "postgresql":
                # One add at a time across instances, so the limits below hold exactly (SQLite's
                # BEGIN IMMEDIATE already serialises writers).
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": FEEDBACK_LOCK})
            self._purge(conn, now)
            existing = self._find(conn, digest, label)
            if existing is not None:
                return existing, False
            count, size = conn.execute(
                sa.text(
                    "SELECT count(*), coalesce(sum(size), 0) FROM feedback "
                    "WHERE status <> 'rejected'"
                )
            ).one()
            if count >= self.max_items or size + len(image) > self.max_bytes:
                raise StoreFullError(
                    f"the feedback store is full ({count} items, {size / 2**20:.0f} MB): "
                    "reject items, wait for the retention period, or raise "
                    "serve.feedback_max_items / serve.feedback_max_mb"
                )
            conn.execute(
                sa.text(
                    "INSERT INTO feedback (sha256, label, image, size, predicted, probability, "
                    "model_version, created_at) VALUES (:sha, :label, :image, :size, "
                    ":predicted, :probability, :version, :now) "
                    "ON CONFLICT (sha256, label) DO NOTHING"
                ),
                {
                    "sha": digest,
                    "label": label,
                    "image": image,
                    "size": len(image),
                    "predicted": predicted,
                    "probability": probability,
                    "version": model_version,
                    "now": now,
                },
            )
            item = self._find(conn, digest, label)
        if item is None:
            raise RuntimeError("feedback insert not found in its own transaction")
        return item, True

    @staticmethod
    def _find(conn, digest: str, label: str) -> Item | None:
        row = conn.execute(
            sa.text(f"SELECT {_COLUMNS} FROM feedback WHERE sha256 = :sha AND label = :label"),
            {"sha": digest, "label": label},
        ).first()
        return _item(row) if row else None

    def _purge(self, conn, now: float) -> int:
        result = conn.execute(
            sa.text("DELETE FROM feedback WHERE created_at < :cutoff"),
            {"cutoff": now - self.retention_s},
        )
        return result.rowcount

    def purge(self, now: float | None = None) -> int:
        """Delete items older than the retention period; how many went."""
        with self.db.begin() as conn:
            return self._purge(conn, time.time() if now is None else now)

    def items(self, status: str, after: int = 0, limit: int = 100) -> list[Item]:
        """Items with a status, oldest first, with ids above `after` (to page through)."""
        if status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}, got {status!r}")
        if not 0 <= after <= MAX_ID or limit < 1:
            raise ValueError(f"after must be 0..{MAX_ID} and limit at least 1")
        with self.db.read() as conn:
            rows = conn.execute(
                sa.text(
                    f"SELECT {_COLUMNS} FROM feedback WHERE status = :status AND id > :after "
                    "ORDER BY id LIMIT :limit"
                ),
                {"status": status, "after": after, "limit": limit},
            ).all()
        return [_item(r) for r in rows]

    def image(self, item_id: int) -> bytes | None:
        """The image as sent; None for no such item, or a rejected one (its image is gone)."""
        if not 0 <= item_id <= MAX_ID:
            return None
        with self.db.read() as conn:
            data = conn.execute(
                sa.text("SELECT image FROM feedback WHERE id = :id"), {"id": item_id}
            ).scalar()
        return bytes(data) if data else None

    def review(self, item_id: int, decision: str, now: float | None = None) -> bool:
        """Mark an item accepted or rejected; False if there is no such item."""
        if decision not in ("accepted", "rejected"):
            raise ValueError(f"decision must be accepted or rejected, got {decision!r}")
        if not 0 <= item_id <= MAX_ID:
            return False
        values = {"s": decision, "now": time.time() if now is None else now, "id": item_id}
        sql = "UPDATE feedback SET status = :s, reviewed_at = :now"
        if decision == "rejected":
            sql += ", image = :empty, size = 0"  # a rejected image is not kept
            values["empty"] = b""
        with self.db.begin() as conn:
            result = conn.execute(sa.text(sql + " WHERE id = :id"), values)
        return result.rowcount == 1

    def counts(self) -> dict[str, int]:
        with self.db.read() as conn:
            rows = conn.execute(
                sa.text("SELECT status, count(*) FROM feedback GROUP BY status")
            ).all()
        return {status: 0 for status in STATUSES} | {s: int(n) for s, n in rows}
