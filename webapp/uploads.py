"""Reading uploaded files: in memory only, never on disk, never under the client's name."""

from __future__ import annotations

import base64
import binascii
import io
from typing import IO, Any

from flask import Request

from webapp.errors import ClientError
from webapp.service import Upload

MAX_NAME = 200


class InMemoryRequest(Request):
    """Werkzeug spools uploads over 500 KB to temp files; keep them in memory instead.

    MAX_CONTENT_LENGTH bounds the memory this can take."""

    def _get_file_stream(  # type: ignore[override]
        self,
        total_content_length: Any,
        content_type: Any,
        filename: Any = None,
        content_length: Any = None,
    ) -> IO[bytes]:
        return io.BytesIO()


def display_name(name: str | None) -> str:
    """The client's file name, for display only (escaped by templates and JSON, truncated)."""
    return (name or "")[:MAX_NAME]


def form_uploads(request: Request, field: str, max_files: int, why: str = "") -> list[Upload]:
    files = [f for f in request.files.getlist(field) if f is not None]
    if not files or all(not f.filename and f.content_length == 0 for f in files):
        raise ClientError(400, f"no image: send a file in the multipart field '{field}'")
    if len(files) > max_files:
        where = f" {why}" if why else ""
        raise ClientError(
            400, f"too many files: {len(files)} (at most {max_files} per request{where})"
        )
    uploads = []
    for i, f in enumerate(files):
        data = f.read()
        name = display_name(f.filename)
        if not data:
            raise ClientError(400, f"file {i + 1}" + (f" ({name})" if name else "") + " is empty")
        uploads.append(Upload(name, data))
    return uploads


def b64_instances(body: Any, max_files: int) -> list[Upload]:
    """TF Serving / KServe V1 body: {"instances": [{"b64": "..."}, ...]}."""
    if not isinstance(body, dict) or not isinstance(body.get("instances"), list):
        raise ClientError(400, 'expected a JSON object {"instances": [{"b64": "<base64 image>"}]}')
    instances = body["instances"]
    if not instances:
        raise ClientError(400, "instances is empty")
    if len(instances) > max_files:
        raise ClientError(400, f"too many instances: {len(instances)} (at most {max_files})")
    uploads = []
    for i, item in enumerate(instances):
        encoded = item.get("b64") if isinstance(item, dict) else None
        if not isinstance(encoded, str):
            raise ClientError(400, f'instance {i}: expected {{"b64": "<base64 image>"}}')
        try:
            data = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise ClientError(400, f"instance {i}: b64 is not valid base64") from None
        if not data:
            raise ClientError(400, f"instance {i}: empty image")
        uploads.append(Upload(f"instance {i}", data))
    return uploads
