"""One explanation at a time per worker (webapp/service.py): while the slot is taken, another
explain request gets a 503 saying why, predictions without explain=true still get their answer,
and the slot is free again once the explanation ends, even one that failed."""

from __future__ import annotations

import io
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from webapp import create_app, saliency, service

from conftest import pattern, png

BUSY = "busy explaining other images: retry, or drop explain=true"
# Only a safety net against a hung test: every wait below ends on an event the test sets.
SAFETY_S = 60


@pytest.fixture
def app(model_dir, tmp_path, monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("DRIFT_DB", raising=False)
    params = tmp_path / "params.yaml"
    params.write_text("serve:\n  database: ''\n")
    # A request that finds the slot taken gives up at once: the 503 needs no waiting.
    monkeypatch.setattr(service, "EXPLAIN_WAIT_S", 0)
    return create_app(model_dir=model_dir, params_file=params)


def explain(client, i: int = 0):
    data = {"image": (io.BytesIO(png(pattern(0, i))), "a.png")}
    return client.post("/api/v1/predict?explain=true", data=data)


def predict(client, i: int = 0):
    data = {"image": (io.BytesIO(png(pattern(0, i))), "a.png")}
    return client.post("/api/v1/predict", data=data)


class HeldExplanation:
    """The first explanation stops inside the slot until released; later ones run through."""

    def __init__(self, monkeypatch) -> None:
        self.inside = threading.Event()
        self.release = threading.Event()
        self.calls = 0
        original = saliency.occlusion_map

        def occlusion_map(*args, **kwargs):
            self.calls += 1
            if self.calls == 1:
                self.inside.set()
                assert self.release.wait(SAFETY_S), "the test never released the slot"
            return original(*args, **kwargs)

        monkeypatch.setattr(saliency, "occlusion_map", occlusion_map)


def test_a_second_explain_request_gets_503_while_the_slot_is_held(app, monkeypatch):
    held = HeldExplanation(monkeypatch)
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(explain, app.test_client(), 1)
        try:
            assert held.inside.wait(SAFETY_S), "the first explanation never started"
            client = app.test_client()
            busy = explain(client, 2)
            assert busy.status_code == 503
            assert busy.json == {"error": {"status": 503, "message": BUSY}}
            # The page explains every upload: it says the same, as a page.
            page = client.post("/", data={"image": (io.BytesIO(png(pattern(1, 3))), "b.png")})
            assert page.status_code == 503 and BUSY in page.get_data(as_text=True)
            # A plain prediction does not queue behind the explanation.
            plain = predict(client, 4)
            assert plain.status_code == 200 and "heatmap" not in plain.json["predictions"][0]
            assert not first.done()  # all of the above happened while the slot was held
        finally:
            held.release.set()  # also when an assertion failed: no thread left waiting
        done = first.result(SAFETY_S)
    assert done.status_code == 200
    assert done.json["predictions"][0]["heatmap"].startswith("data:image/png;base64,")
    # Released: the next explanation gets the slot.
    again = explain(app.test_client(), 5)
    assert again.status_code == 200 and "heatmap" in again.json["predictions"][0]
    assert held.calls == 2  # the refused requests never started an explanation


def test_an_explanation_that_fails_frees_the_slot(app, monkeypatch):
    original = saliency.occlusion_map
    failures = iter([RuntimeError("occlusion failed")])

    def failing_once(*args, **kwargs):
        failure = next(failures, None)
        if failure is not None:
            raise failure
        return original(*args, **kwargs)

    monkeypatch.setattr(saliency, "occlusion_map", failing_once)
    client = app.test_client()
    assert explain(client, 1).status_code == 500
    after = explain(client, 2)
    assert after.status_code == 200, after.json
    assert after.json["predictions"][0]["heatmap"].startswith("data:image/png;base64,")
