"""The per-client rate limit (webapp/ratelimit.py): a sliding window, driven here by an injected
clock, never by sleeping; and a bounded memory of clients, the least recently seen forgotten
first."""

from __future__ import annotations

import io
from types import SimpleNamespace

import pytest

from webapp import create_app, ratelimit
from webapp.ratelimit import RateLimiter

from conftest import pattern, png


def test_requests_past_the_limit_wait_until_the_oldest_leaves_the_window():
    limiter = RateLimiter(3, window_s=60.0)
    assert [limiter.allow("a", now=t) for t in (0.0, 10.0, 20.0)] == [True] * 3
    # Refused for the rest of the window; refusals do not count, so they do not extend it.
    assert [limiter.allow("a", now=t) for t in (30.0, 45.0, 59.999)] == [False] * 3
    assert limiter.allow("a", now=60.0)  # the request at 0 is a window old: one place free
    assert not limiter.allow("a", now=60.5)  # sliding: 10, 20 and 60 are still inside
    assert limiter.allow("a", now=70.0)  # the one at 10 has left
    assert not limiter.allow("a", now=70.0)


def test_each_client_has_its_own_window():
    limiter = RateLimiter(1, window_s=60.0)
    assert limiter.allow("a", now=0.0)
    assert not limiter.allow("a", now=1.0)
    assert limiter.allow("b", now=1.0)
    assert not limiter.allow("b", now=2.0)
    assert limiter.allow("a", now=60.0) and not limiter.allow("b", now=60.0)


def test_the_least_recently_seen_client_is_forgotten_first(monkeypatch):
    monkeypatch.setattr(ratelimit, "MAX_CLIENTS", 3)
    limiter = RateLimiter(1, window_s=60.0)
    for client in ("a", "b", "c"):
        assert limiter.allow(client, now=0.0)
    assert not limiter.allow("a", now=1.0)  # refused, and now the most recently seen
    assert limiter.allow("d", now=2.0)  # a fourth client: b, the least recently seen, goes
    assert list(limiter._seen) == ["c", "a", "d"]
    assert not limiter.allow("a", now=3.0)  # still remembered: still limited
    assert limiter.allow("b", now=3.0)  # forgotten: starts afresh (and c goes)
    assert list(limiter._seen) == ["d", "a", "b"]


def test_memory_stays_bounded_whatever_the_number_of_clients(monkeypatch):
    monkeypatch.setattr(ratelimit, "MAX_CLIENTS", 50)
    limiter = RateLimiter(5, window_s=60.0)
    for n in range(2000):
        assert limiter.allow(f"198.51.100.{n}", now=float(n) / 100)
        assert len(limiter._seen) <= 50
    assert list(limiter._seen) == [f"198.51.100.{n}" for n in range(1950, 2000)]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> Clock:
    """The limiter's clock, for webapp.ratelimit only: the rest of the app keeps real time."""
    fake = Clock()
    monkeypatch.setattr(ratelimit, "time", SimpleNamespace(monotonic=fake.monotonic))
    return fake


def test_the_app_answers_429_within_the_window_and_accepts_after_it(
    model_dir, tmp_path, monkeypatch, clock
):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("DRIFT_DB", raising=False)
    params = tmp_path / "params.yaml"
    params.write_text(
        f"serve:\n  feedback: true\n  feedback_per_minute: 2\n  database: {tmp_path / 'a.sqlite'}\n"
    )
    client = create_app(model_dir=model_dir, params_file=params).test_client()

    def send(i: int):
        body = {"image": (io.BytesIO(png(pattern(0, i))), "a.png"), "label": "cat"}
        return client.post("/api/v1/feedback", data=body)

    assert [send(i).status_code for i in range(2)] == [201, 201]
    clock.now += 59.0
    refused = send(2)
    assert refused.status_code == 429
    assert refused.json["error"]["message"] == "too much feedback: at most 2 a minute"
    clock.now += 1.0  # a minute after the first two
    assert [send(i).status_code for i in (3, 4, 5)] == [201, 201, 429]
