"""The web app on a real PostgreSQL server under gunicorn: several app instances on one
database, an outage under load, and a database that is down when the app starts."""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from conftest import pattern, png
from helpers import procfile_server

pytestmark = pytest.mark.slow


def predict(url: str, n: int = 0) -> int:
    files = {"image": ("a.png", png(pattern(n % 3, n)), "image/png")}
    return requests.post(f"{url}/api/v1/predict", files=files, timeout=30).status_code


def drift_total(url: str) -> int:
    res = requests.get(f"{url}/api/v1/drift", timeout=30)
    assert res.status_code == 200, res.text
    return res.json()["profile"]["total"]


def wait_for_total(url: str, expected: int, within: float = 20.0) -> int:
    deadline = time.monotonic() + within
    while (total := drift_total(url)) < expected and time.monotonic() < deadline:
        time.sleep(0.3)
    return total


def test_two_app_instances_on_one_database_report_the_sum(model_dir, postgres, tmp_path):
    """Two gunicorn masters (two dynos), two workers each, one DATABASE_URL: either one's
    /api/v1/drift counts every prediction both served; so does the CLI on the database."""
    database = postgres.create_database()
    env = {"WEB_CONCURRENCY": "2", "DATABASE_URL": database}
    with (
        procfile_server(model_dir, tmp_path / "a.log", **env) as (url_a, _),
        procfile_server(model_dir, tmp_path / "b.log", **env) as (url_b, _),
    ):
        with ThreadPoolExecutor(6) as pool:
            a = list(pool.map(lambda n: predict(url_a, n), range(30)))
            b = list(pool.map(lambda n: predict(url_b, n), range(17)))
        assert a == [200] * 30 and b == [200] * 17
        assert wait_for_total(url_a, 47) == 47
        assert drift_total(url_b) == 47
        version = requests.get(f"{url_a}/api/v1/model", timeout=10).json()["version"]
    from image_classifier.drift import read_profile

    assert read_profile(database, version).total == 47


def wait_until(condition, what: str, within: float = 60.0) -> None:
    """Poll until `condition()` holds. The deadline only ends a run that would hang; what
    is observed, not how long it took, decides the test."""
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, f"still waiting for {what} after {within} s"
        time.sleep(0.1)


# Predictions served at each step of the outage: enough that every worker gets some and
# its write of their counts is tried, few enough for a slow machine.
DURING = 40


def test_database_restart_under_load_fails_no_prediction_and_loses_no_count(
    model_dir, postgres, tmp_path
):
    database = postgres.create_database()
    log = tmp_path / "server.log"
    with procfile_server(model_dir, log, WEB_CONCURRENCY="2", DATABASE_URL=database) as (url, _):
        statuses: Counter[int] = Counter()
        counting = threading.Lock()
        stop = threading.Event()

        def load() -> None:
            n = 0
            while not stop.is_set():
                status = predict(url, n)
                with counting:
                    statuses[status] += 1
                n += 1

        def served() -> int:
            with counting:
                return sum(statuses.values())

        threads = [threading.Thread(target=load) for _ in range(4)]
        for t in threads:
            t.start()
        try:
            wait_until(lambda: drift_total(url) > 0, "counts written before the outage")
            postgres.stop()  # returns once the server is down
            try:
                down = requests.get(f"{url}/api/v1/drift", timeout=30)
                assert down.status_code == 503 and "drift counts unavailable" in down.text
                # Predictions go on while the workers' counts wait in memory: until DURING
                # more were answered and each worker's write has failed (it says so once).
                at_stop = served()
                wait_until(lambda: served() >= at_stop + DURING, "predictions during the outage")
                wait_until(
                    lambda: log.read_text().count("drift counts kept in memory, not saved") >= 2,
                    "both workers keeping their counts in memory",
                )
            finally:
                postgres.start()
            at_start = served()
            wait_until(lambda: served() >= at_start + DURING, "predictions after the outage")
        finally:
            stop.set()
            for t in threads:
                t.join()
        assert set(statuses) == {200}, statuses  # not one prediction failed
        # Every prediction is counted once the retry timers have written what waited.
        assert wait_for_total(url, served(), within=30) == served()


def test_database_down_at_start_serves_and_recovers_when_it_comes_up(model_dir, postgres, tmp_path):
    database = postgres.create_database()
    log = tmp_path / "server.log"
    postgres.stop()
    try:
        with procfile_server(model_dir, log, WEB_CONCURRENCY="2", DATABASE_URL=database) as (
            url,
            _,
        ):
            assert requests.get(f"{url}/readyz", timeout=10).status_code == 200
            assert [predict(url, n) for n in range(6)] == [200] * 6
            res = requests.get(f"{url}/api/v1/drift", timeout=30)
            assert res.status_code == 503 and "unavailable" in res.json()["error"]["message"]
            said = log.read_text()
            assert "database unavailable at start" in said and "socket" in said
            postgres.start()
            assert wait_for_total(url, 6, within=30) == 6
    finally:
        if not (postgres.data / "postmaster.pid").exists():
            postgres.start()


def test_workers_recycled_during_an_outage_hand_their_counts_on(model_dir, postgres, tmp_path):
    """gunicorn recycles workers (max_requests) while the database is down: each ending worker
    spills its unwritten counts to the journal, a later worker takes them over, and once the
    database is back every prediction served is counted once, none twice."""
    database = postgres.create_database()
    log, journal = tmp_path / "server.log", tmp_path / "journal"
    env = {
        "WEB_CONCURRENCY": "2",
        "DATABASE_URL": database,
        "DRIFT_JOURNAL": str(journal),
        "GUNICORN_CMD_ARGS": "--max-requests 25 --max-requests-jitter 0",
    }
    with procfile_server(model_dir, log, **env) as (url, _):
        with ThreadPoolExecutor(4) as pool:
            assert list(pool.map(lambda n: predict(url, n), range(10))) == [200] * 10
        assert wait_for_total(url, 10) == 10
        postgres.stop()
        try:
            with ThreadPoolExecutor(4) as pool:
                during = list(pool.map(lambda n: predict(url, n), range(150)))
            assert during == [200] * 150  # no prediction waits for the database
            # 150 requests over 2 workers recycling every 25: workers ended holding counts
            # (and the ones that replaced them took the counts over, into memory)
            assert f"drift counts kept in {journal} at exit" in log.read_text(errors="replace")
        finally:
            postgres.start()
        with ThreadPoolExecutor(4) as pool:
            assert list(pool.map(lambda n: predict(url, n), range(20))) == [200] * 20
        assert wait_for_total(url, 180, within=60) == 180
        # nothing left over to be counted a second time, and nothing counted twice so far
        assert not list(journal.iterdir())
        assert drift_total(url) == 180
    text = log.read_text(errors="replace")
    assert f"drift counts kept in {journal} at exit" in text
    assert "drift counts taken over from the journal" in text
    assert "drift counts lost at exit" not in text
