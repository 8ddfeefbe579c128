"""One error type for everything a client can get wrong; each carries its HTTP status."""

from __future__ import annotations

from typing import Any

from flask import request


class ClientError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    def to_json(self) -> dict:
        return {"error": {"status": self.status, "message": self.message}}


def json_body() -> Any:
    """The request's JSON body, None when it is not JSON. Flask's silent parsing gives None
    for malformed JSON but lets Python's RecursionError through for arrays or objects nested
    about a thousand deep, a few kB that would otherwise be a 500."""
    try:
        return request.get_json(silent=True)
    except RecursionError:
        raise ClientError(400, "the JSON body is nested too deeply") from None
