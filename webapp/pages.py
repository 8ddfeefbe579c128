"""The upload page. A plain form POST works without JavaScript; static/app.js only improves it."""

from __future__ import annotations

from flask import Blueprint, current_app, render_template, request

from webapp.errors import ClientError
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


def error_page(err: ClientError):
    return render_page(status=err.status, error=err.message)
