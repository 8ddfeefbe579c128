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
CONFIDENCE = Histogram(
    "prediction_confidence",
    "Top-1 probability of each prediction",
    ["model_version"],
    buckets=(0.2, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0),
)


def record(results) -> None:
    """Hand predictions to the request log and the metrics: labels and confidences only."""
    g.predictions = [(r.top[0][0], r.top[0][1]) for r in results]


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
        for label, confidence in predictions:
            PREDICTIONS.labels(label, model_version).inc()
            CONFIDENCE.labels(model_version).observe(confidence)
        store = app.extensions.get("drift_store")
        if store is not None and predictions and response.status_code < 400:
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
            line["label"] = [label for label, _ in predictions]
            line["confidence"] = [round(c, 4) for _, c in predictions]
        access_log.info(json.dumps(line, ensure_ascii=False))
        return response
