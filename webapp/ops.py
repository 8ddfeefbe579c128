"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify

from webapp import observability

bp = Blueprint("ops", __name__)


@bp.get("/healthz")
def healthz():
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz():
    st = current_app.extensions["model_state"]
    if not st.ready:
        return jsonify(status="not ready", reason=st.error), 503
    return jsonify(status="ready", version=st.classifier.card.version)


@bp.get("/metrics")
def metrics():
    body, content_type = observability.render()
    return Response(body, content_type=content_type)
