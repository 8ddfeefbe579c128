"""The upload page and the model page. A plain form POST works without JavaScript;
static/app.js only improves it."""

from __future__ import annotations

import base64

from flask import Blueprint, abort, current_app, render_template, request

from webapp.errors import ClientError
from webapp.model_report import ModelReport
from webapp.observability import record
from webapp.service import ModelState
from webapp.uploads import form_uploads

bp = Blueprint("pages", __name__)


# "This doesn't look like any of: ..." names at most this many classes, then how many more.
NAMED_CLASSES = 12


def render_page(status: int = 200, **context):
    st: ModelState = current_app.extensions["model_state"]
    card = st.classifier.card if st.classifier else None
    context.setdefault("error", None)
    context.setdefault("thanks", None)
    context.setdefault("example", None)
    html = render_template(
        "index.html",
        card=card,
        settings=st.settings,
        examples=st.examples if card else [],
        named_classes=NAMED_CLASSES,
        **context,
    )
    return html, status


@bp.get("/")
def index():
    return render_page()


@bp.post("/")
def upload():
    st: ModelState = current_app.extensions["model_state"]
    uploads = form_uploads(request, "image", max_files=1)
    result = st.classify(uploads)[0]
    record([result])
    preview, heatmap = st.explain(uploads[0], result)
    return render_page(
        result=result, preview=preview, heatmap=heatmap, feedback_b64=_resendable(uploads[0].data)
    )


@bp.post("/example/<int:index>")
def classify_example(index: int):
    """One click on an example image: the model's own test image, read from the model folder
    by its index in model.json `examples` (never a path from the request). Not counted in
    the drift counts: it is not traffic."""
    st: ModelState = current_app.extensions["model_state"]
    upload = st.example(index)
    result = st.classify([upload])[0]
    record([result], drift=False)
    preview, heatmap = st.explain(upload, result)
    example = st.examples[index]
    return render_page(result=result, preview=preview, heatmap=heatmap, example=example)


@bp.get("/example/<int:index>.png")
def example_image(index: int):
    st: ModelState = current_app.extensions["model_state"]
    upload = st.example(index)
    headers = {"Content-Type": "image/png", "Cache-Control": "public, max-age=300"}
    return upload.data, 200, headers


def _resendable(data: bytes) -> str | None:
    """The upload as base64 for the page's feedback form, if the form could post it back."""
    st: ModelState = current_app.extensions["model_state"]
    # base64 is 4/3 of the bytes; leave room for the form's other fields.
    if (
        not st.settings.feedback
        or len(data) * 4 // 3 + 4096 > current_app.config["MAX_CONTENT_LENGTH"]
    ):
        return None
    return base64.b64encode(data).decode("ascii")


@bp.get("/model")
def model_page():
    """How good the served model is: what a person needs before trusting it."""
    st: ModelState = current_app.extensions["model_state"]
    report: ModelReport = current_app.extensions["model_report"]
    card = st.classifier.card if st.classifier else None
    return render_template("model.html", card=card, report=report)


@bp.get("/model/<name>.png")
def model_figure(name: str):
    report: ModelReport = current_app.extensions["model_report"]
    if name not in report.figures:
        abort(404)
    headers = {"Content-Type": "image/png", "Cache-Control": "public, max-age=300"}
    return report.figures[name], 200, headers


def error_page(err: ClientError):
    return render_page(status=err.status, error=err.message)
