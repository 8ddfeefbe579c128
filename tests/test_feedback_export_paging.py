"""`feedback export` reads accepted items a page at a time, from the database and from a running
app's review API: with more items than one page, every accepted item comes out exactly once,
oldest first, and nothing else does."""

from __future__ import annotations

import csv
import hashlib
import urllib.parse

import pytest

from image_classifier import feedback as feedback_cli
from image_classifier.monitoring.database import Database
from image_classifier.monitoring.feedback_store import FeedbackStore
from webapp import create_app

from conftest import live_server, pattern, png

TOKEN = "paging-review-token"
# More calls than any page size below needs: a paging loop that stops advancing fails the
# test instead of hanging it.
MAX_CALLS = 40


def image(i: int) -> bytes:
    return png(pattern(i % 3, i))


def filled_store(path) -> tuple[FeedbackStore, list[int]]:
    """11 items, 8 of them accepted; the pending and rejected ones sit between accepted ids,
    so a page boundary that skipped or repeated an id would show."""
    store = FeedbackStore(Database(str(path)), max_items=100, retention_days=30)
    ids = [store.add(image(i), "dog", "cat", 0.5, "v1")[0].id for i in range(11)]
    accepted = []
    for n, item_id in enumerate(ids):
        if n == 5:
            assert store.review(item_id, "rejected")
        elif n not in (2, 8):  # those stay pending
            assert store.review(item_id, "accepted")
            accepted.append(item_id)
    return store, accepted


def expected_files(accepted_indices: list[int]) -> list[str]:
    return sorted(
        f"dog/feedback-{hashlib.sha256(image(i)).hexdigest()[:16]}.png" for i in accepted_indices
    )


ACCEPTED_INDICES = [0, 1, 3, 4, 6, 7, 9, 10]


def spy_on_pages(monkeypatch) -> list[tuple[int, int]]:
    """Record each (after, limit) the export asks the store for."""
    calls: list[tuple[int, int]] = []
    original = FeedbackStore.items

    def items(self, status, after=0, limit=100):
        calls.append((after, limit))
        if len(calls) > MAX_CALLS:
            raise AssertionError(f"paging does not end: {calls[-5:]}")
        assert status == "accepted"
        return original(self, status, after, limit)

    monkeypatch.setattr(FeedbackStore, "items", items)
    return calls


def check_written(out, report_text: str) -> None:
    assert "8 new file(s), 0 already there" in report_text
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    assert files == expected_files(ACCEPTED_INDICES)
    for i in ACCEPTED_INDICES:
        name = f"dog/feedback-{hashlib.sha256(image(i)).hexdigest()[:16]}.png"
        assert (out / name).read_bytes() == image(i)
    with (out / ".feedback.csv").open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["file"] for r in rows] == expected_files(ACCEPTED_INDICES)  # each listed once


@pytest.mark.parametrize("page", [1, 3, 4])  # 8 accepted: uneven pages, and whole ones
def test_export_from_the_database_pages_through_every_accepted_item_once(
    tmp_path, monkeypatch, capsys, page
):
    store, accepted = filled_store(tmp_path / "app.sqlite")
    monkeypatch.setattr(feedback_cli, "PAGE", page)
    calls = spy_on_pages(monkeypatch)
    got = [item.id for item in feedback_cli._from_database(store)]
    assert got == accepted  # every one, once, oldest first
    # Each page starts after the last id of the one before; one more (empty) page ends it.
    pages = [accepted[i : i + page] for i in range(0, len(accepted), page)]
    assert calls == [(0, page)] + [(p[-1], page) for p in pages]

    calls.clear()
    out = tmp_path / "raw"
    assert (
        feedback_cli.main(["export", "--to", str(out), "--db", str(tmp_path / "app.sqlite")]) == 0
    )
    assert len(calls) == len(pages) + 1
    check_written(out, capsys.readouterr().out)


def test_export_from_a_running_app_pages_through_every_accepted_item_once(
    model_dir, tmp_path, monkeypatch, capsys
):
    db = tmp_path / "app.sqlite"
    _, accepted = filled_store(db)
    params = tmp_path / "params.yaml"
    params.write_text(f"serve:\n  feedback: true\n  database: {db}\n")
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("DRIFT_DB", raising=False)
    monkeypatch.setenv("FEEDBACK_TOKEN", TOKEN)
    app = create_app(model_dir=model_dir, params_file=params)
    monkeypatch.setattr(feedback_cli, "PAGE", 3)
    asked: list[dict] = []
    original = feedback_cli.AppSource._get

    def get(self, path, missing_ok=False):
        if path.startswith("/api/v1/feedback?"):
            asked.append(dict(urllib.parse.parse_qsl(path.partition("?")[2])))
            if len(asked) > MAX_CALLS:
                raise AssertionError(f"paging does not end: {asked[-5:]}")
        return original(self, path, missing_ok)

    monkeypatch.setattr(feedback_cli.AppSource, "_get", get)
    out = tmp_path / "raw"
    with live_server(app) as url:
        got = [item.id for item in feedback_cli.AppSource(url, TOKEN).items()]
        assert got == accepted
        expected_after = ["0", str(accepted[2]), str(accepted[5]), str(accepted[7])]
        assert [a["after"] for a in asked] == expected_after
        assert {a["limit"] for a in asked} == {"3"}
        assert feedback_cli.main(["export", "--to", str(out), "--url", url]) == 0
    check_written(out, capsys.readouterr().out)
