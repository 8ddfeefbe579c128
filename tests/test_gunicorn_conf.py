"""webapp/gunicorn.conf.py's worker placement rule (the live servers: test_webapp_server.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

CONF = Path(__file__).resolve().parents[1] / "webapp" / "gunicorn.conf.py"


@pytest.fixture
def conf(monkeypatch):
    for name in ("PIN_WORKERS", "LITERT_THREADS"):
        monkeypatch.delenv(name, raising=False)
    spec = importlib.util.spec_from_file_location("gunicorn_conf", CONF)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_one_worker_per_cpu_takes_the_least_held_cpu(conf):
    assert conf.worker_cpu({0, 1}, 2, []) == 0
    assert conf.worker_cpu({0, 1}, 2, [0]) == 1
    assert conf.worker_cpu({4, 5, 6}, 3, [4, 6]) == 5  # the CPUs this process may use
    # A HUP reload: the old workers still hold both CPUs while the new ones are spawned.
    assert conf.worker_cpu({0, 1}, 2, [0, 1]) == 0
    assert conf.worker_cpu({0, 1}, 2, [0, 1, 0]) == 1


@pytest.mark.parametrize(
    ("allowed", "workers", "env"),
    [
        ({0, 1, 2, 3, 4, 5, 6, 7}, 2, {}),  # a shared dyno: 8 CPUs shown, 2 workers
        ({0, 1}, 3, {}),  # more workers than CPUs
        ({0, 1}, 2, {"LITERT_THREADS": "2"}),  # a worker's threads need more than a core
        ({0, 1}, 2, {"PIN_WORKERS": "0"}),
    ],
)
def test_workers_are_left_to_the_scheduler_otherwise(conf, monkeypatch, allowed, workers, env):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert conf.worker_cpu(allowed, workers, []) is None
