"""The upload page and the model page. A plain form POST works without JavaScript;
static/app.js only improves it."""

from __future__ import annotations

from flask import Blueprint, abort, current_app, render_template, request

from webapp.errors import ClientError
from webapp.model_report import ModelReport
from webapp.observability import record
from webapp.service import ModelState
from webapp.uploads import form_uploads

bp = Blueprint("pages", __name__)


def render_page(status: int = 200, **context):
    st: ModelState = current_app.extensions["model_state"]
    card = st.classifier.card if st.classifier else None
    context.setdefault("error", None)
    html = render_template("index.html", card=card, settings=st.settings, **context)
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
    return render_page(result=result, preview=preview, heatmap=heatmap)


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
