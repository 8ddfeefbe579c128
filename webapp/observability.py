"""One JSON log line per request, and Prometheus metrics (per-worker files under gunicorn)."""

from __future__ import annotations

import json
import logging
import os
import time

from flask import Flask, Response, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

access_log = logging.getLogger("webapp.access")

REQUESTS = Counter(
    "http_requests_total", "HTTP requests by route and status", ["method", "route", "status"]
)
LATENCY = Histogram(
    "http_request_duration_seconds",
    "Request latency by route",
    ["route"],
    buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
PREDICTIONS = Counter("predictions_total", "Predicted top-1 class", ["label", "model_version"])
UNKNOWN = Counter(
    "unknown_predictions_total",
    'Predictions the detector called unknown ("none of these"); predictions_total counts '
    "them too, under their closest class",
    ["model_version"],
)
CONFIDENCE = Histogram(
    "prediction_confidence",
    "Top-1 probability of each prediction",
    ["model_version"],
    buckets=(0.2, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0),
)


def record(results, drift: bool = True) -> None:
    """Hand predictions to the request log and the metrics: top-1 class, its probability and
    whether the image is known, nothing else. drift=False keeps them out of the drift
    counts (the page's example images are the model's own test images, not traffic)."""
    g.predictions = [(r.top[0][0], r.top[0][1], r.known) for r in results]
    g.count_drift = drift


def render() -> tuple[bytes, str]:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def init_app(app: Flask, model_version: str) -> None:
    @app.before_request
    def start_timer() -> None:
        g.started = time.perf_counter()

    @app.after_request
    def log_request(response: Response) -> Response:
        elapsed = time.perf_counter() - g.get("started", time.perf_counter())
        route = request.url_rule.rule if request.url_rule else "<unmatched>"
        REQUESTS.labels(request.method, route, str(response.status_code)).inc()
        LATENCY.labels(route).observe(elapsed)
        predictions = g.get("predictions", [])
        for label, confidence, known in predictions:
            PREDICTIONS.labels(label, model_version).inc()
            CONFIDENCE.labels(model_version).observe(confidence)
            if not known:
                UNKNOWN.labels(model_version).inc()
        store = app.extensions.get("drift_store")
        counted = g.get("count_drift", True)
        if store is not None and predictions and counted and response.status_code < 400:
            # Only counted in memory here; the store's timer writes them and logs a failure,
            # so drift counts never fail a prediction.
            store.record(model_version, predictions)
        line = {
            "method": request.method,
            "path": request.path,
            "status": response.status_code,
            "latency_ms": round(elapsed * 1000, 2),
            "pid": os.getpid(),  # which gunicorn worker served it
        }
        if predictions:
            line["label"] = [label for label, _, _ in predictions]
            line["confidence"] = [round(c, 4) for _, c, _ in predictions]
            line["known"] = [known for _, _, known in predictions]
        access_log.info(json.dumps(line, ensure_ascii=False))
        return response
