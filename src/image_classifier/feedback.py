"""Accepted feedback as training data: class folders plus a manifest.

    python -m image_classifier.feedback export --to data/raw [--database-url URL | --db FILE]
    FEEDBACK_TOKEN=... python -m image_classifier.feedback export --to data/raw --url APP

Without --db, --database-url or --url it reads the database the web app uses: $DATABASE_URL,
else $DRIFT_DB, else serve.database.

Writes each accepted item as <to>/<label>/feedback-<sha256 prefix>.<format's extension> and
lists every exported file in <to>/.feedback.csv (hidden: the split stage skips dotfiles, and
DVC tracks it with the folder). Run it again at any time: a file already there is left as it
is, and one listed in the manifest is not written again even if you deleted it, so nothing is
duplicated. Items labelled "none" (none of the classes) and images accepted
under two different labels are not exported; the summary counts them. Then `dvc add` the
folder and `dvc repro` (README.md, "Feedback").
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import os
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from image_classifier import atomic, config
from image_classifier.errors import DataError, MissingFileError
from image_classifier.monitoring.database import (
    Database,
    DatabaseUnavailableError,
    app_database,
)
from image_classifier.monitoring.feedback_store import NONE, FeedbackStore, Item
from image_classifier.params import ParamsError, load_params

MANIFEST = ".feedback.csv"
FIELDS = ["file", "sha256", "label", "predicted", "probability", "model_version", "created_at"]
PAGE = 500


@dataclass
class ExportReport:
    written: list[str] = field(default_factory=list)
    present: int = 0
    none: int = 0
    conflicting: list[str] = field(default_factory=list)  # sha256 accepted under two labels
    refused: list[str] = field(default_factory=list)  # why an item could not be written

    def summary(self) -> str:
        parts = [f"{len(self.written)} new file(s)", f"{self.present} already there"]
        if self.none:
            parts.append(f"{self.none} labelled '{NONE}' not exported")
        if self.conflicting:
            parts.append(f"{len(self.conflicting)} image(s) accepted under two labels skipped")
        if self.refused:
            parts.append(f"{len(self.refused)} item(s) refused")
        return ", ".join(parts)


def extension(data: bytes) -> str:
    """The file extension of the image's real format (the client's file name is not kept)."""
    with Image.open(io.BytesIO(data)) as img:
        fmt = img.format
    names = [ext for ext, f in Image.registered_extensions().items() if f == fmt]
    preferred = {"JPEG": ".jpg", "TIFF": ".tif"}
    return preferred.get(fmt or "", names[0] if names else ".img")


def safe_label(label: str) -> bool:
    """A class name usable as one folder name (the server checked it; an API can lie)."""
    return label not in ("", ".", "..") and not any(c in label for c in "/\\\0")


def usable(item: Item) -> bool:
    """Label and hash become file names: checked, whatever the source (an API can lie)."""
    return safe_label(item.label) and re.fullmatch(r"[0-9a-f]{64}", item.sha256) is not None


def export(items: list[Item], image: Callable[[int], bytes | None], to: Path) -> ExportReport:
    """Write accepted items into class folders under `to`; see the module docstring."""
    report = ExportReport()
    labels: dict[str, set[str]] = defaultdict(set)
    for item in items:
        if item.label != NONE and usable(item):
            labels[item.sha256].add(item.label)
    manifest = _read_manifest(to / MANIFEST)
    for item in items:
        if item.label == NONE:
            report.none += 1
            continue
        if not usable(item):
            report.refused.append(f"item {item.id}: unusable label or sha256")
            continue
        if len(labels[item.sha256]) > 1:
            if item.sha256 not in report.conflicting:
                report.conflicting.append(item.sha256)
            continue
        prefix = f"{item.label}/feedback-{item.sha256[:16]}"
        # Listed once means exported once: a file the user has since deleted stays deleted.
        listed = any(f.startswith(prefix + ".") for f in manifest)
        if listed or any((to / item.label).glob(f"feedback-{item.sha256[:16]}.*")):
            report.present += 1
            continue
        data = image(item.id)
        if data is None or hashlib.sha256(data).hexdigest() != item.sha256:
            report.refused.append(f"item {item.id}: image gone or not the one recorded")
            continue
        try:
            name = prefix + extension(data)
        except OSError as exc:  # stored by an older app, or damaged since
            report.refused.append(f"item {item.id}: not an image ({exc})")
            continue
        _write(to / name, data)
        manifest[name] = {
            "file": name,
            "sha256": item.sha256,
            "label": item.label,
            "predicted": item.predicted,
            "probability": f"{item.probability:.6f}",
            "model_version": item.model_version,
            "created_at": f"{item.created_at:.3f}",
        }
        report.written.append(name)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(manifest[k] for k in sorted(manifest))
    _write(to / MANIFEST, buf.getvalue().encode("utf-8"))
    return report


def _write(path: Path, data: bytes) -> None:
    """Atomically; DataError when the destination the user gave cannot take it."""
    try:
        atomic.write_bytes(path, data)
    except OSError as exc:
        raise DataError(f"cannot write {path}: {exc.strerror or exc}") from None


def _read_manifest(path: Path) -> dict[str, dict[str, str]]:
    if not path.is_file():
        return {}
    with path.open(newline="", encoding="utf-8") as fh:
        return {row["file"]: row for row in csv.DictReader(fh)}


def _from_database(store: FeedbackStore) -> Iterator[Item]:
    after = 0
    while page := store.items("accepted", after, PAGE):
        yield from page
        after = page[-1].id


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        # urllib would send the Authorization header on to wherever the redirect points.
        raise urllib.error.HTTPError(newurl, code, f"redirected to {newurl}: refused", headers, fp)


class AppSource:
    """A running web app's review API, with the token from $FEEDBACK_TOKEN: over HTTPS, or
    plain HTTP to this machine only, and never following a redirect."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url.rstrip("/")
        parts = urllib.parse.urlsplit(self.url)
        local = parts.hostname in ("localhost", "127.0.0.1", "::1")
        if parts.scheme != "https" and not (parts.scheme == "http" and local):
            raise DataError(f"--url must be https:// (or http:// to localhost): {url}")
        self.headers = {"Authorization": f"Bearer {token}"}
        self.opener = urllib.request.build_opener(_NoRedirect)

    def _get(self, path: str, missing_ok: bool = False) -> bytes | None:
        """The body at `path`; None for a 404 when `missing_ok`. DataError when the app
        cannot be reached or refuses."""
        req = urllib.request.Request(self.url + path, headers=self.headers)
        try:
            with self.opener.open(req, timeout=60) as res:
                return res.read()
        except urllib.error.HTTPError as exc:
            if missing_ok and exc.code == 404:
                return None
            raise DataError(f"{self.url}{path}: HTTP {exc.code} {exc.reason}") from None
        except OSError as exc:  # urllib's URLError, timeouts
            raise DataError(f"{self.url}{path}: {getattr(exc, 'reason', exc)}") from None

    def items(self) -> Iterator[Item]:
        after = 0
        while True:
            query = urllib.parse.urlencode({"status": "accepted", "after": after, "limit": PAGE})
            path = f"/api/v1/feedback?{query}"
            body = self._get(path)
            try:
                page = json.loads(body)["items"]
                items = [Item(**{k: raw[k] for k in Item.__dataclass_fields__}) for raw in page]
            except (ValueError, KeyError, TypeError) as exc:
                raise DataError(f"{self.url}{path}: not a feedback page ({exc})") from None
            if not items:
                return
            yield from items
            after = items[-1].id

    def image(self, item_id: int) -> bytes | None:
        """None when the item was deleted since it was listed."""
        return self._get(f"/api/v1/feedback/{item_id}/image", missing_ok=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m image_classifier.feedback",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    cmd = commands.add_parser("export", help="write accepted feedback as class folders")
    cmd.add_argument("--to", type=Path, required=True, help="the image folder, e.g. data/raw")
    source = cmd.add_mutually_exclusive_group()
    source.add_argument("--db", type=Path, help="the web app's SQLite file (serve.database)")
    source.add_argument("--database-url", help="the web app's PostgreSQL (its DATABASE_URL)")
    source.add_argument("--url", help="a running web app; the token is read from FEEDBACK_TOKEN")
    cmd.add_argument("--params", type=Path, default=config.PARAMS_FILE)
    args = parser.parse_args(argv)
    try:
        if args.url:
            token = os.environ.get("FEEDBACK_TOKEN", "")
            if not token:
                raise DataError("--url needs the review token in the environment: FEEDBACK_TOKEN")
            app = AppSource(args.url, token)
            report = export(list(app.items()), app.image, args.to)
        else:
            given = args.database_url or args.db
            database = "" if given else load_params(args.params).serve.database
            target = app_database(database, args.database_url, args.db)
            if "://" not in target and not Path(target).is_file():
                raise MissingFileError(f"no feedback database at {target}")
            db = Database(target, timeout_s=30.0)
            store = FeedbackStore(db, max_items=1, retention_days=1e9)  # read only
            try:
                report = export(list(_from_database(store)), store.image, args.to)
            finally:
                db.close()
    except (ParamsError, DataError, MissingFileError, DatabaseUnavailableError) as exc:
        print(f"feedback export: {exc}", file=sys.stderr)
        return 2
    print(f"feedback export to {args.to}: {report.summary()}")
    for sha in report.conflicting:
        print(f"  skipped {sha[:16]}: accepted under more than one label", file=sys.stderr)
    for why in report.refused:
        print(f"  refused {why}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
