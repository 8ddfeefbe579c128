"""JSON API: /api/v1/* and the TensorFlow Serving / KServe V1 REST shape. Cookie-less, no CSRF.

An image the out-of-distribution detector rejects ("none of these") gets `known: false` and
`label: null`, with its score and its closest classes under `closest`, never under `top`:
the closest classes are not an answer (webapp/openapi.yaml).
"""

from __future__ import annotations

import math

from flask import Blueprint, current_app, jsonify, request

from image_classifier.litert.classifier import describe
from webapp.errors import ClientError, json_body
from webapp.observability import record
from webapp.service import ModelState, Result, Upload
from webapp.storage import Storage
from webapp.uploads import b64_instances, form_uploads

bp = Blueprint("api", __name__)

TRUE = ("1", "true", "yes")


def state() -> ModelState:
    return current_app.extensions["model_state"]


def ranked(result: Result) -> list[dict]:
    return [{"label": name, "probability": p} for name, p in result.top]


def prediction_json(result: Result) -> dict:
    """A known image: its label, confidence and top-k. An unknown one: label and confidence
    null, its closest classes under `closest`."""
    body = {
        "filename": result.name,
        "label": result.label,
        "confidence": result.top[0][1] if result.known else None,
        "unsure": result.unsure,
        "known": result.known,
        "ood_score": result.score,
    }
    body["top" if result.known else "closest"] = ranked(result)
    return body


def kserve_json(result: Result) -> dict:
    """One instance's prediction: every class's probability in the model's class order, and
    the same verdict as /api/v1/predict."""
    body = {
        "probabilities": [float(p) for p in result.probs],
        "label": result.label,
        "known": result.known,
        "ood_score": result.score,
    }
    if not result.known:
        body["closest"] = ranked(result)
    return body


def finite(value):
    """JSON has no infinity: a non-finite number (a detector threshold set on no images)
    becomes null."""
    return value if not isinstance(value, float) or math.isfinite(value) else None


@bp.post("/api/v1/predict")
def predict():
    st = state()
    explain = request.args.get("explain", "").lower() in TRUE
    limit = st.settings.max_explain_files if explain else st.settings.max_files
    uploads = form_uploads(request, "image", limit, "with explain=true" if explain else "")
    results = st.classify(uploads)
    record(results)
    body = [prediction_json(r) for r in results]
    if explain:
        for item, upload, result in zip(body, uploads, results, strict=True):
            item["heatmap"] = st.explain(upload, result)[1]
    return jsonify(model_version=st.require().card.version, predictions=body)


@bp.get("/api/v1/model")
def model():
    st = state()
    info = describe(st.require().card)
    info["ood"] = {key: finite(value) for key, value in info["ood"].items()}
    info.update(top_k=st.settings.top_k, unsure_threshold=st.settings.unsure_threshold)
    return jsonify(info)


@bp.get("/api/v1/drift")
def drift():
    """Live prediction counts for a model version (default: the served one), for
    `python -m image_classifier.drift --url ...`. Counts only: no images, no inputs."""
    storage: Storage = current_app.extensions["storage"]
    if storage.drift is None:
        raise ClientError(404, f"drift recording is off ({storage.off})")
    version = request.args.get("version") or state().require().card.version
    profile = storage.drift.profile(version)  # DatabaseUnavailableError: 503 (webapp/__init__)
    return jsonify(model_version=version, profile=profile.to_json())


def _model_name(name: str) -> None:
    expected = state().settings.model_name
    if name != expected:
        raise ClientError(404, f"no model named {name!r} (this server serves {expected!r})")


@bp.get("/v1/models/<name>")
def kserve_status(name: str):
    _model_name(name)
    st = state()
    return jsonify(name=name, ready=st.ready, version=st.require().card.version)


@bp.post("/v1/models/<target>")
def kserve_predict(target: str):
    # One rule with the same converter as the GET route: "<name>:predict" is a single segment.
    name, _, verb = target.rpartition(":")
    if verb != "predict":
        raise ClientError(404, "expected POST /v1/models/<name>:predict")
    _model_name(name)
    st = state()
    body = json_body()
    uploads: list[Upload] = b64_instances(body, st.settings.max_files)
    results = st.classify(uploads)
    record(results)
    return jsonify(predictions=[kserve_json(r) for r in results])
