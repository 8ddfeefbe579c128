"""One error type for everything a client can get wrong; each carries its HTTP status."""

from __future__ import annotations


class ClientError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    def to_json(self) -> dict:
        return {"error": {"status": self.status, "message": self.message}}
