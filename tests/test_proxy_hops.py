"""PROXY_HOPS (webapp/security.py): how many proxies' X-Forwarded-For and -Proto entries the app
believes. The client address it settles on is what the feedback rate limit counts by, so a
client must not be able to choose it by sending the headers itself."""

from __future__ import annotations

import io

import pytest
from flask import jsonify, request

from webapp import create_app

from conftest import pattern, png

# The test client connects from here; with no proxy trusted this is the client's address.
PEER = "127.0.0.1"


def make_app(model_dir, tmp_path, monkeypatch, hops: str | None, per_minute: int = 100):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("DRIFT_DB", raising=False)
    monkeypatch.delenv("PROXY_TRUST_HOST", raising=False)
    if hops is None:
        monkeypatch.delenv("PROXY_HOPS", raising=False)
    else:
        monkeypatch.setenv("PROXY_HOPS", hops)
    params = tmp_path / "params.yaml"
    params.write_text(
        f"serve:\n  feedback: true\n  feedback_per_minute: {per_minute}\n"
        f"  database: {tmp_path / 'a.sqlite'}\n"
    )
    app = create_app(model_dir=model_dir, params_file=params)

    # What every route of the app sees as the client, behind the same WSGI middleware.
    @app.get("/_seen_as")
    def seen_as():
        return jsonify(addr=request.remote_addr, scheme=request.scheme)

    return app


def seen(client, forwarded_for: str | None = None, proto: str | None = None) -> dict:
    headers = {}
    if forwarded_for is not None:
        headers["X-Forwarded-For"] = forwarded_for
    if proto is not None:
        headers["X-Forwarded-Proto"] = proto
    res = client.get("/_seen_as", headers=headers)
    return {**res.json, "hsts": "Strict-Transport-Security" in res.headers}


@pytest.mark.parametrize(
    ("hops", "expected"),
    [
        ("0", PEER),  # no proxy: the headers are the client's own words, ignored
        ("1", "203.0.113.9"),  # the address the one proxy appended, last
        (None, "203.0.113.9"),  # the default: one proxy (Heroku's router)
        ("2", "198.51.100.7"),  # two proxies: the second-to-last entry
    ],
)
def test_the_client_address_comes_from_the_trusted_hops_only(
    model_dir, tmp_path, monkeypatch, hops, expected
):
    client = make_app(model_dir, tmp_path, monkeypatch, hops).test_client()
    # A client-written entry first, then what the proxies appended.
    got = seen(client, "192.0.2.66, 198.51.100.7, 203.0.113.9", proto="http, https, https")
    assert got["addr"] == expected
    trusted = hops != "0"
    assert got["scheme"] == ("https" if trusted else "http")
    assert got["hsts"] is trusted  # HTTPS as the proxy says, or not believed at all
    assert seen(client)["addr"] == PEER  # no header: the connection's own address


def test_a_negative_number_of_hops_stops_the_start(model_dir, tmp_path, monkeypatch):
    with pytest.raises(ValueError, match=r"PROXY_HOPS must be >= 0 \(got -1\)"):
        make_app(model_dir, tmp_path, monkeypatch, "-1")


def feedback(client, i: int, forwarded_for: str):
    body = {"image": (io.BytesIO(png(pattern(0, i))), "a.png"), "label": "cat"}
    return client.post("/api/v1/feedback", data=body, headers={"X-Forwarded-For": forwarded_for})


def test_with_no_proxy_trusted_a_forged_address_does_not_escape_the_rate_limit(
    model_dir, tmp_path, monkeypatch
):
    client = make_app(model_dir, tmp_path, monkeypatch, "0", per_minute=1).test_client()
    assert feedback(client, 0, "203.0.113.1").status_code == 201
    assert feedback(client, 1, "203.0.113.2").status_code == 429  # the same connection


def test_with_one_proxy_the_limit_counts_by_the_address_it_appended(
    model_dir, tmp_path, monkeypatch
):
    client = make_app(model_dir, tmp_path, monkeypatch, "1", per_minute=1).test_client()
    assert feedback(client, 0, "192.0.2.1, 203.0.113.9").status_code == 201
    # The same client behind the proxy, whatever it writes in front: limited.
    assert feedback(client, 1, "192.0.2.2, 203.0.113.9").status_code == 429
    # Another client, through the same proxy connection: its own limit.
    assert feedback(client, 2, "203.0.113.10").status_code == 201
