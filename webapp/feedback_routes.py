"""Feedback from people and programs: "this prediction was wrong, the right class is ...".

Off unless serve.feedback is true. The server runs the model on the image itself (so the
stored prediction is the model's, and a hostile file gets the same 4xx as an upload) and
stores the image for review (webapp/review.py); what is kept: monitoring/feedback_store.py.
"""

from __future__ import annotations

import base64
import binascii

from flask import Blueprint, current_app, jsonify, request

from image_classifier.monitoring.feedback_store import NONE, FeedbackStore, Item, StoreFullError
from webapp.errors import ClientError
from webapp.ratelimit import RateLimiter
from webapp.service import ModelState, Upload
from webapp.uploads import form_uploads

bp = Blueprint("feedback", __name__)


def feedback_store() -> FeedbackStore:
    store = current_app.extensions["storage"].feedback
    if store is None:
        raise ClientError(404, "feedback is off (serve.feedback: false, or no database)")
    return store


def _label(classes: tuple[str, ...]) -> str:
    label = request.form.get("label")
    if label is None:
        raise ClientError(400, f"no label: send the field 'label' (a class, or '{NONE}')")
    if label != NONE and label not in classes:
        shown = label if len(label) <= 60 else label[:60] + "..."
        raise ClientError(
            400, f"unknown label {shown!r}: expected one of the model's classes or '{NONE}'"
        )
    return label


def store_feedback(upload: Upload) -> tuple[Item, bool]:
    """Check the client's rate, run the model on the image, store it with its label."""
    store = feedback_store()
    limiter: RateLimiter = current_app.extensions["feedback_limiter"]
    if not limiter.allow(request.remote_addr or "unknown"):
        raise ClientError(429, f"too much feedback: at most {limiter.per_minute} a minute")
    st: ModelState = current_app.extensions["model_state"]
    clf = st.require()
    label = _label(clf.card.classes)
    result = st.classify([upload])[0]
    # What the model answered: its top class, or NONE for an image it calls unknown (the
    # probability is then its closest class's).
    predicted, probability = result.top[0]
    if not result.known:
        predicted = NONE
    try:
        return store.add(upload.data, label, predicted, probability, clf.card.version)
    except StoreFullError as exc:
        raise ClientError(503, str(exc)) from None


@bp.post("/api/v1/feedback")
def api_feedback():
    feedback_store()  # 404 before reading the body when feedback is off
    upload = form_uploads(request, "image", max_files=1)[0]
    item, new = store_feedback(upload)
    body = {
        "stored": new,
        "sha256": item.sha256,
        "label": item.label,
        "predicted": item.predicted,
        "probability": item.probability,
        "model_version": item.model_version,
    }
    return jsonify(body), 201 if new else 200


@bp.post("/feedback")
def page_feedback():
    """The page's "wrong?" form: the image comes back base64-encoded in a hidden field."""
    from webapp.pages import render_page  # pages imports this module's helpers

    feedback_store()
    try:
        data = base64.b64decode(request.form.get("image_b64", ""), validate=True)
    except (binascii.Error, ValueError):
        raise ClientError(400, "image_b64 is not valid base64") from None
    if not data:
        raise ClientError(400, "no image: the form's image_b64 field is empty")
    item, new = store_feedback(Upload("", data))
    said = "none of these classes" if item.label == NONE else repr(item.label)
    thanks = f"Thank you: saved for review as {said}." if new else "Already saved, thank you."
    return render_page(thanks=thanks)
