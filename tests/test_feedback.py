"""Feedback: the store on both engines, the page and API that fill it, the review behind the
token, and the export that turns accepted items into class folders."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import re
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa

from image_classifier import feedback as feedback_cli
from image_classifier.errors import DataError
from image_classifier.monitoring.database import Database
from image_classifier.monitoring.feedback_store import FeedbackStore, Item, StoreFullError
from webapp import create_app

import fuzzing
from conftest import live_server, pattern, png

TOKEN = "s3cret-review-token"
HOSTILE = [
    "cat'; DROP TABLE feedback; --",
    'dog" OR "1"="1',
    "x' UNION SELECT image FROM feedback --",
    "%s %(label)s :label ? $1",
    "\N{PILE OF POO} crème brûlée",
    "L" * 10_000,
]


@pytest.fixture
def target(database_target) -> str:
    return database_target


def image(label: int = 0, i: int = 0) -> bytes:
    return png(pattern(label, i))


# ---- the store ----------------------------------------------------------------------------


def test_same_image_and_label_is_stored_once_and_a_new_label_is_a_new_item(target):
    store = FeedbackStore(Database(target), max_items=10, retention_days=30)
    first, new = store.add(image(), "dog", "cat", 0.8, "v1")
    again, new_again = store.add(image(), "dog", "cat", 0.8, "v1")
    other, new_other = store.add(image(), "none", "cat", 0.8, "v1")
    assert (new, new_again, new_other) == (True, False, True)
    assert again.id == first.id != other.id
    assert first.sha256 == hashlib.sha256(image()).hexdigest()
    assert store.image(first.id) == image()
    assert [i.id for i in store.items("pending")] == [first.id, other.id]


def test_sql_in_labels_is_stored_verbatim_never_executed(target):
    """Every value goes to the database as a bound parameter."""
    store = FeedbackStore(Database(target), max_items=100, retention_days=30)
    for n, label in enumerate(HOSTILE):
        store.add(image(0, n), label, label, 0.5, label)
    items = store.items("pending")
    assert [i.label for i in items] == HOSTILE
    assert [i.predicted for i in items] == [i.model_version for i in items] == HOSTILE
    assert store.counts()["pending"] == len(HOSTILE)  # the table is still there


def test_a_full_store_refuses_new_items_but_not_known_ones(target):
    store = FeedbackStore(Database(target), max_items=2, retention_days=30)
    first, _ = store.add(image(0, 1), "cat", "dog", 0.5, "v1")
    store.add(image(0, 2), "cat", "dog", 0.5, "v1")
    with pytest.raises(StoreFullError, match="full"):
        store.add(image(0, 3), "cat", "dog", 0.5, "v1")
    assert store.add(image(0, 1), "cat", "dog", 0.5, "v1")[1] is False
    # Rejecting deletes the image at once and makes room; the pair is still known.
    assert store.review(first.id, "rejected") and store.image(first.id) is None
    assert store.add(image(0, 3), "cat", "dog", 0.5, "v1")[1] is True
    assert store.add(image(0, 1), "cat", "dog", 0.5, "v1")[1] is False


def test_the_store_is_bounded_in_bytes_too(target):
    store = FeedbackStore(Database(target), max_items=100, retention_days=30, max_mb=0.001)
    store.add(image(0, 1), "cat", "dog", 0.5, "v1")  # a few hundred bytes
    with pytest.raises(StoreFullError, match="feedback_max_mb"):
        store.add(b"x" * 1000, "cat", "dog", 0.5, "v1")


def test_concurrent_adds_never_pass_the_limit(target):
    """Many workers at once: the count check and the insert happen under one lock."""
    store = FeedbackStore(Database(target, timeout_s=10), max_items=5, retention_days=30)

    def add(n: int) -> str:
        try:
            return "new" if store.add(image(1, n), "cat", "dog", 0.5, "v1")[1] else "known"
        except StoreFullError:
            return "full"

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(add, [n % 12 for n in range(24)]))
    assert outcomes.count("new") == 5 and store.counts()["pending"] == 5


def test_items_older_than_the_retention_are_deleted(target):
    store = FeedbackStore(Database(target), max_items=10, retention_days=1)
    day = 86400.0
    store.add(image(0, 1), "cat", "dog", 0.5, "v1", now=1000 * day)
    store.add(image(0, 2), "cat", "dog", 0.5, "v1", now=1000.5 * day)
    assert store.purge(now=1001.2 * day) == 1
    assert [i.created_at for i in store.items("pending")] == [1000.5 * day]
    # A new item purges too: nothing outlives the period just because nobody reviews.
    store.add(image(0, 3), "cat", "dog", 0.5, "v1", now=1002 * day)
    assert len(store.items("pending")) == 1


def test_review_moves_an_item_and_pages_go_by_id(target):
    store = FeedbackStore(Database(target), max_items=10, retention_days=30)
    ids = [store.add(image(0, n), "cat", "dog", 0.5, "v1")[0].id for n in range(5)]
    assert store.review(ids[1], "accepted") and store.review(ids[3], "accepted")
    assert store.review(ids[0], "rejected")
    assert not store.review(10**9, "accepted")
    with pytest.raises(ValueError, match="accepted or rejected"):
        store.review(ids[2], "maybe")
    assert [i.id for i in store.items("accepted")] == [ids[1], ids[3]]
    assert [i.id for i in store.items("accepted", after=ids[1])] == [ids[3]]
    assert store.counts() == {"pending": 2, "accepted": 2, "rejected": 1}


# ---- the web app --------------------------------------------------------------------------


def make_app(model_dir, tmp_path, monkeypatch, target: str, token: str | None = TOKEN, **serve):
    settings = {"feedback": True, "database": str(tmp_path / "unused.sqlite"), **serve}
    lines = "".join(
        f"  {k}: {str(v).lower() if isinstance(v, bool) else v}\n" for k, v in settings.items()
    )
    params = tmp_path / "params.yaml"
    params.write_text("serve:\n" + lines + "image:\n  max_pixels: 1000000\n")
    if "://" in target:
        monkeypatch.setenv("DATABASE_URL", target)
    else:
        monkeypatch.delenv("DATABASE_URL", raising=False)
        monkeypatch.setenv("DRIFT_DB", target)
    if token:
        monkeypatch.setenv("FEEDBACK_TOKEN", token)
    else:
        monkeypatch.delenv("FEEDBACK_TOKEN", raising=False)
    return create_app(model_dir=model_dir, params_file=params)


def send(client, data: bytes, label: str, **headers):
    body = {"image": (io.BytesIO(data), "photo.png"), "label": label}
    return client.post("/api/v1/feedback", data=body, headers=headers)


def auth(token: str = TOKEN) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"review:{token}".encode()).decode()}


def test_api_feedback_stores_the_models_prediction_and_the_given_label(
    model_dir, tmp_path, monkeypatch, target
):
    client = make_app(model_dir, tmp_path, monkeypatch, target).test_client()
    res = send(client, image(0), "dog")
    assert res.status_code == 201, res.json
    body = res.json
    assert body["stored"] is True and body["label"] == "dog"
    # pattern 0 is the fixture model's cat (a training image: known to its detector)
    assert body["predicted"] == "cat" and 0 < body["probability"] <= 1
    assert body["sha256"] == hashlib.sha256(image(0)).hexdigest()
    again = send(client, image(0), "dog")
    assert again.status_code == 200 and again.json["stored"] is False
    assert send(client, image(0), "none").status_code == 201
    # Nothing about the client is kept: the columns are the documented ones.
    with Database(target).begin() as conn:
        columns = set(conn.execute(sa.text("SELECT * FROM feedback")).keys())
    assert columns == {
        "id", "sha256", "label", "image", "predicted", "probability", "model_version",
        "created_at", "status", "reviewed_at", "size",
    }  # fmt: skip


def test_labels_outside_the_models_classes_are_refused(model_dir, tmp_path, monkeypatch):
    client = make_app(model_dir, tmp_path, monkeypatch, str(tmp_path / "a.sqlite")).test_client()
    for label in [*HOSTILE, "", "Dog", "none of these"]:
        res = send(client, image(0), label)
        assert res.status_code == 400, label
        assert "unknown label" in res.json["error"]["message"]
        assert len(res.json["error"]["message"]) < 200  # a 10,000-character label is cut
    res = client.post("/api/v1/feedback", data={"image": (io.BytesIO(image(0)), "x.png")})
    assert res.status_code == 400 and "no label" in res.json["error"]["message"]
    with Database(str(tmp_path / "a.sqlite")).begin() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM feedback")).scalar() == 0


def test_hostile_images_as_feedback_get_a_4xx_and_store_nothing(model_dir, tmp_path, monkeypatch):
    path = str(tmp_path / "a.sqlite")
    client = make_app(model_dir, tmp_path, monkeypatch, path, feedback_per_minute=10_000)
    client = client.test_client()
    statuses = Counter()
    stored = 0
    for _fmt, data in fuzzing.mutated(fuzzing.seed_files(), 300, seed=11):
        res = send(client, data, "cat")
        statuses[res.status_code] += 1
        stored += res.status_code == 201
        assert res.status_code < 500, res.json
    bomb = png(pattern(0, 0).resize((3000, 3000)))
    assert send(client, bomb, "cat").status_code == 413  # image.max_pixels, as uploads
    assert statuses[422] > 0 and statuses[201] > 0, statuses
    with Database(path).begin() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM feedback")).scalar() == stored


def test_feedback_is_rate_limited_per_client(model_dir, tmp_path, monkeypatch):
    app = make_app(
        model_dir, tmp_path, monkeypatch, str(tmp_path / "a.sqlite"), feedback_per_minute=3
    )
    client = app.test_client()
    codes = [send(client, image(0, n), "cat").status_code for n in range(5)]
    assert codes == [201, 201, 201, 429, 429]
    other = send(client, image(0, 9), "cat", **{"X-Forwarded-For": "203.0.113.9"})
    assert other.status_code == 201  # another client (one proxy hop trusted by default)


def test_feedback_is_off_by_default(model_dir, tmp_path, monkeypatch):
    app = make_app(model_dir, tmp_path, monkeypatch, str(tmp_path / "a.sqlite"), feedback=False)
    client = app.test_client()
    assert send(client, image(0), "cat").status_code == 404
    page = client.post("/", data={"image": (io.BytesIO(image(0)), "a.png")})
    assert page.status_code == 200 and b"Wrong?" not in page.data
    assert client.get("/review", headers=auth()).status_code == 404


def test_a_cross_site_browser_post_to_feedback_is_refused(model_dir, tmp_path, monkeypatch):
    client = make_app(model_dir, tmp_path, monkeypatch, str(tmp_path / "a.sqlite")).test_client()
    assert send(client, image(0), "cat", **{"Sec-Fetch-Site": "cross-site"}).status_code == 403
    assert send(client, image(0), "cat", Origin="https://evil.example").status_code == 403
    forged = client.post(
        "/feedback",
        data={"image_b64": base64.b64encode(image(0)).decode(), "label": "cat"},
        headers={"Origin": "null"},
    )
    assert forged.status_code == 403
    decided = client.post(
        "/review/1", data={"decision": "accept"}, headers={**auth(), "Sec-Fetch-Site": "cross-site"}
    )
    assert decided.status_code == 403


def test_the_page_offers_feedback_next_to_the_result_and_stores_it(
    model_dir, tmp_path, monkeypatch
):
    client = make_app(model_dir, tmp_path, monkeypatch, str(tmp_path / "a.sqlite")).test_client()
    page = client.post("/", data={"image": (io.BytesIO(image(2)), "a.png")}).get_data(as_text=True)
    assert "Wrong? Tell us the right class" in page
    hidden = re.search(r'name="image_b64" value="([^"]+)"', page).group(1)
    assert base64.b64decode(hidden) == image(2)  # the very bytes, sent back by the form
    options = re.findall(r'<option value="([^"]+)"', page)
    assert options == ["cat", "crème brûlée", "dog", "none"]
    thanks = client.post("/feedback", data={"image_b64": hidden, "label": "crème brûlée"})
    assert thanks.status_code == 200
    assert "saved for review as &#39;crème brûlée&#39;" in thanks.get_data(as_text=True)
    bad = client.post("/feedback", data={"image_b64": "not base64!", "label": "cat"})
    assert bad.status_code == 400


def test_review_needs_the_token_and_does_not_exist_without_one(model_dir, tmp_path, monkeypatch):
    client = make_app(model_dir, tmp_path, monkeypatch, str(tmp_path / "a.sqlite")).test_client()
    send(client, image(0), "dog")
    for path in ["/review", "/review/1/thumb.png", "/api/v1/feedback", "/api/v1/feedback/1/image"]:
        assert client.get(path).status_code == 401
        wrong = client.get(path, headers=auth("s3cret-review-tokeN"))
        assert wrong.status_code == 401 and "WWW-Authenticate" in wrong.headers
        assert client.get(path, headers={"Authorization": f"Bearer {TOKEN}x"}).status_code == 401
        # Digest's "password" parameter is no token (Werkzeug exposes it as one).
        digest = {"Authorization": f'Digest username="review", password="{TOKEN}"'}
        assert client.get(path, headers=digest).status_code == 401
    assert client.post("/review/1", data={"decision": "accept"}).status_code == 401
    assert client.post("/api/v1/feedback/1/review", json={"decision": "accept"}).status_code == 401
    deep = client.post(
        "/api/v1/feedback/1/review",
        data=b"[" * 5000 + b"]" * 5000,
        content_type="application/json",
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert deep.status_code == 400 and "nested too deeply" in deep.json["error"]["message"]
    tokenless = make_app(model_dir, tmp_path, monkeypatch, str(tmp_path / "a.sqlite"), token=None)
    client = tokenless.test_client()
    for path in ["/review", "/api/v1/feedback", "/api/v1/feedback/1/image"]:
        assert client.get(path, headers=auth()).status_code == 404
        assert client.get(path, headers=auth("")).status_code == 404


def test_review_page_accepts_and_rejects_with_thumbnails(model_dir, tmp_path, monkeypatch):
    client = make_app(model_dir, tmp_path, monkeypatch, str(tmp_path / "a.sqlite")).test_client()
    for n in range(3):
        send(client, image(0, n), "dog")
    page = client.get("/review", headers=auth())
    assert page.status_code == 200 and page.headers["Cache-Control"] == "no-store"
    html = page.get_data(as_text=True)
    ids = [int(i) for i in re.findall(r'id="item-(\d+)"', html)]
    assert len(ids) == 3 and "3 pending" in html
    thumb = client.get(f"/review/{ids[0]}/thumb.png", headers=auth())
    assert thumb.status_code == 200 and thumb.data.startswith(b"\x89PNG")
    assert thumb.data != image(0, 0)  # re-encoded, never the uploaded bytes
    res = client.post(f"/review/{ids[0]}", data={"decision": "accept"}, headers=auth())
    assert res.status_code == 303
    client.post(f"/review/{ids[1]}", data={"decision": "reject"}, headers=auth())
    api = client.post(
        f"/api/v1/feedback/{ids[2]}/review", json={"decision": "accept"}, headers=auth()
    )
    assert api.status_code == 200 and api.json["status"] == "accepted"
    assert (
        client.post("/review/999", data={"decision": "accept"}, headers=auth()).status_code == 404
    )
    html = client.get("/review", headers=auth()).get_data(as_text=True)
    assert "0 pending · 2 accepted · 1 rejected" in html and "Nothing to review" in html
    listed = client.get("/api/v1/feedback?status=accepted", headers=auth()).json["items"]
    assert [i["id"] for i in listed] == [ids[0], ids[2]]
    # Numbers past 64 bits name nothing (schemathesis found the overflow).
    huge = 10**25
    assert client.get(f"/api/v1/feedback?after={-huge}", headers=auth()).status_code == 400
    assert client.get(f"/api/v1/feedback/{huge}/image", headers=auth()).status_code == 404
    assert (
        client.post(f"/review/{huge}", data={"decision": "accept"}, headers=auth()).status_code
        == 404
    )


def test_database_down_at_start_serves_predictions_and_says_why(
    model_dir, tmp_path, monkeypatch, caplog
):
    down = f"postgresql://nobody@/none?host={tmp_path}"
    client = make_app(model_dir, tmp_path, monkeypatch, down).test_client()
    assert "database unavailable at start" in caplog.text
    assert client.get("/readyz").status_code == 200
    res = client.post("/api/v1/predict", data={"image": (io.BytesIO(image(0)), "a.png")})
    assert res.status_code == 200
    drift = client.get("/api/v1/drift")
    assert drift.status_code == 503
    assert drift.json["error"]["message"] == "drift counts unavailable: the database is unavailable"
    fb = send(client, image(0), "cat")
    assert fb.status_code == 503 and "the database is unavailable" in fb.json["error"]["message"]
    assert fb.json["error"]["message"].startswith("feedback cannot be stored now: ")
    # Every route that needs the database answers the same way (webapp/__init__.py's handler)
    for res in (
        client.get("/review", headers=auth()),
        client.get("/review/1/thumb.png", headers=auth()),
        client.post("/review/1", data={"decision": "accept"}, headers=auth()),
        client.get("/api/v1/feedback?status=accepted", headers=auth()),
        client.get("/api/v1/feedback/1/image", headers=auth()),
    ):
        assert res.status_code == 503, res.request.path
        assert "feedback unavailable: the database is unavailable" in res.get_data(as_text=True)
    # The reason, with the server's address, goes to the log only.
    assert "No such file or directory" in caplog.text
    assert str(tmp_path) not in drift.get_data(as_text=True) + fb.get_data(as_text=True)


def test_a_malformed_database_url_is_logged_and_the_app_serves(model_dir, tmp_path, monkeypatch):
    client = make_app(model_dir, tmp_path, monkeypatch, "mysql://u@h/d").test_client()
    assert client.get("/readyz").status_code == 200
    res = client.get("/api/v1/drift")
    assert (
        res.status_code == 404 and "unsupported database URL scheme" in res.json["error"]["message"]
    )


# ---- export -------------------------------------------------------------------------------


def accepted_app(model_dir, tmp_path, monkeypatch, target):
    app = make_app(model_dir, tmp_path, monkeypatch, target)
    client = app.test_client()
    jpeg = png(pattern(1, 5).convert("RGB"), "JPEG")
    for data, label in [(image(0, 1), "dog"), (jpeg, "crème brûlée"), (image(0, 2), "none")]:
        send(client, data, label)
    send(client, image(0, 3), "cat")  # stays pending
    send(client, image(0, 4), "cat")  # the same image under two labels: both accepted
    send(client, image(0, 4), "dog")
    for item in FeedbackStore(Database(target), 100, 30).items("pending"):
        if item.sha256 != hashlib.sha256(image(0, 3)).hexdigest():
            client.post(f"/review/{item.id}", data={"decision": "accept"}, headers=auth())
    return app, jpeg


def check_export(out, jpeg):
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    dog = f"dog/feedback-{hashlib.sha256(image(0, 1)).hexdigest()[:16]}.png"
    creme = f"crème brûlée/feedback-{hashlib.sha256(jpeg).hexdigest()[:16]}.jpg"
    assert files == sorted([".feedback.csv", dog, creme])
    assert (out / dog).read_bytes() == image(0, 1) and (out / creme).read_bytes() == jpeg
    with (out / ".feedback.csv").open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["file"] for r in rows] == sorted([dog, creme])
    assert {r["label"] for r in rows} == {"dog", "crème brûlée"}


def test_export_from_the_database_writes_class_folders_once(
    model_dir, tmp_path, monkeypatch, target, capsys
):
    _, jpeg = accepted_app(model_dir, tmp_path, monkeypatch, target)
    out = tmp_path / "raw"
    source = ["--database-url", target] if "://" in target else ["--db", target]
    assert feedback_cli.main(["export", "--to", str(out), *source]) == 0
    printed = capsys.readouterr()
    assert "2 new file(s), 0 already there, 1 labelled 'none' not exported" in printed.out
    assert "1 image(s) accepted under two labels skipped" in printed.out
    check_export(out, jpeg)
    assert feedback_cli.main(["export", "--to", str(out), *source]) == 0
    assert "0 new file(s), 2 already there" in capsys.readouterr().out
    check_export(out, jpeg)


def test_export_from_a_running_app_with_the_token(model_dir, tmp_path, monkeypatch, capsys):
    app, jpeg = accepted_app(model_dir, tmp_path, monkeypatch, str(tmp_path / "a.sqlite"))
    out = tmp_path / "raw"
    with live_server(app) as url:
        assert feedback_cli.main(["export", "--to", str(out), "--url", url]) == 0
        check_export(out, jpeg)
        monkeypatch.setenv("FEEDBACK_TOKEN", "wrong")
        assert feedback_cli.main(["export", "--to", str(tmp_path / "x"), "--url", url]) == 2
        assert "401" in capsys.readouterr().err
        monkeypatch.delenv("FEEDBACK_TOKEN")
        assert feedback_cli.main(["export", "--to", str(tmp_path / "x"), "--url", url]) == 2
        assert "FEEDBACK_TOKEN" in capsys.readouterr().err


def test_export_refuses_names_an_app_could_forge(tmp_path):
    """Labels and hashes become file names: a lying source cannot write outside --to."""
    data = image(0, 7)
    real = hashlib.sha256(data).hexdigest()
    forged = [
        Item(1, "/../../../../pwn" + "0" * 48, "cat", "cat", 0.5, "v", 0.0, "accepted"),
        Item(2, real, "../outside", "cat", 0.5, "v", 0.0, "accepted"),
        Item(3, real, "..", "cat", 0.5, "v", 0.0, "accepted"),
        Item(4, "a" * 64, "cat", "cat", 0.5, "v", 0.0, "accepted"),  # not the image's hash
        Item(5, real, "dog", "cat", 0.5, "v", 0.0, "accepted"),
    ]
    out = tmp_path / "deep" / "raw"
    report = feedback_cli.export(forged, lambda _id: data, out)
    assert len(report.refused) == 4 and report.written == [f"dog/feedback-{real[:16]}.png"]
    written = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()}
    assert written == {f"deep/raw/dog/feedback-{real[:16]}.png", "deep/raw/.feedback.csv"}


def test_export_over_http_goes_to_this_machine_only_and_never_follows_a_redirect():
    with pytest.raises(ValueError, match="https"):
        feedback_cli.AppSource("http://my-app.example.com", "t")
    feedback_cli.AppSource("https://my-app.example.com", "t")
    feedback_cli.AppSource("http://127.0.0.1:8000", "t")
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    seen = []

    class Redirect(BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append(self.headers.get("Authorization"))
            self.send_response(302)
            self.send_header("Location", f"http://127.0.0.1:{self.server.server_port}/elsewhere")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Redirect)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        source = feedback_cli.AppSource(f"http://127.0.0.1:{server.server_port}", "secret")
        with pytest.raises(DataError, match=r"HTTP 302 redirected to .*refused"):
            list(source.items())
    finally:
        server.shutdown()
    assert seen == ["Bearer secret"]  # asked once; the redirect target never got the token


def test_review_posts_must_come_from_the_same_origin(model_dir, tmp_path, monkeypatch):
    client = make_app(model_dir, tmp_path, monkeypatch, str(tmp_path / "a.sqlite")).test_client()
    send(client, image(0), "dog")
    sibling = {**auth(), "Sec-Fetch-Site": "same-site"}  # another subdomain of the same site
    assert client.post("/review/1", data={"decision": "accept"}, headers=sibling).status_code == 403
    own = {**auth(), "Sec-Fetch-Site": "same-origin"}
    assert client.post("/review/1", data={"decision": "accept"}, headers=own).status_code == 303


def test_retention_applies_even_with_feedback_turned_off(model_dir, tmp_path, monkeypatch):
    path = str(tmp_path / "a.sqlite")
    old = FeedbackStore(Database(path), 100, 30)
    old.add(image(0, 1), "cat", "dog", 0.5, "v1", now=0.0)  # 1970: long past any retention
    make_app(model_dir, tmp_path, monkeypatch, path, feedback=False)
    assert FeedbackStore(Database(path), 100, 30).counts()["pending"] == 0


def test_feedback_on_an_image_the_model_calls_unknown_records_none_as_its_answer(
    model_dir, tmp_path, monkeypatch
):
    """The stored prediction is what the model answered: `none` for an image it rejects
    (here a blank one, far below the fixture detector's threshold), its class otherwise;
    the review page says so."""
    from PIL import Image

    client = make_app(model_dir, tmp_path, monkeypatch, str(tmp_path / "a.sqlite")).test_client()
    blank = png(Image.new("L", (12, 12), 255))
    unknown = send(client, blank, "cat").json
    assert unknown["predicted"] == "none" and 0 < unknown["probability"] <= 1
    example = (model_dir / "examples" / "000.png").read_bytes()  # export keeps known ones
    known = send(client, example, "dog").json
    assert known["predicted"] == "cat"
    html = client.get("/review", headers=auth()).get_data(as_text=True)
    assert "<strong>model:</strong> none of these</p>" in html
    assert "<strong>model:</strong> cat (100%)</p>" in html
