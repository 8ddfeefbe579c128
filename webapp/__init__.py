"""Flask web app serving the exported model with LiteRT. Use the factory:

    gunicorn "webapp:create_app()"      (see Procfile and webapp/gunicorn.conf.py)

Nothing here imports TensorFlow.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import yaml
from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException

from image_classifier import config
from image_classifier.monitoring.database import DatabaseUnavailableError
from image_classifier.params import Params, load_params
from webapp import api, feedback_routes, observability, ops, pages, review, security
from webapp.errors import ClientError
from webapp.model_report import load_report
from webapp.ratelimit import RateLimiter
from webapp.service import ModelState
from webapp.storage import open_storage
from webapp.uploads import InMemoryRequest

log = logging.getLogger(__name__)

JSON_PREFIXES = ("/api/", "/v1/", "/healthz", "/readyz", "/openapi.json")


def _params(path: Path) -> Params:
    # A deploy without params.yaml still starts, with the documented defaults.
    return load_params(path) if path.is_file() else Params()


def _setup_logging() -> None:
    """JSON request lines go to stdout, where Heroku and Docker collect them."""
    logger = logging.getLogger("webapp")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


def create_app(model_dir: str | Path | None = None, params_file: str | Path | None = None) -> Flask:
    """Build the app and load the model once, in this process (each gunicorn worker, after fork).

    model_dir defaults to $MODEL_DIR or saved_models/; params_file to $PARAMS_FILE or params.yaml;
    the model page's reports are read from $REPORTS_DIR or reports/ beside the model folder.
    """
    model_dir = Path(model_dir or os.environ.get("MODEL_DIR", config.MODELS_DIR))
    reports_dir = Path(os.environ.get("REPORTS_DIR", model_dir.parent / config.REPORTS_DIR))
    params = _params(Path(params_file or os.environ.get("PARAMS_FILE", config.PARAMS_FILE)))
    _setup_logging()
    app = Flask(__name__)
    app.request_class = InMemoryRequest
    app.json.sort_keys = False  # keep responses in the documented field order
    max_bytes = int(params.serve.max_upload_mb * 1024 * 1024)
    # The page's feedback form sends the image back as a base64 field, not a file part.
    app.config.update(MAX_CONTENT_LENGTH=max_bytes, MAX_FORM_MEMORY_SIZE=max_bytes)
    # The review page's secret; unset, the review routes do not exist (webapp/review.py).
    app.config["FEEDBACK_TOKEN"] = os.environ.get("FEEDBACK_TOKEN", "")
    security.trust_proxies(app)
    state = ModelState(model_dir, params.serve, params.image.max_pixels)
    app.extensions["model_state"] = state
    served = state.classifier.card.version if state.classifier else None
    app.extensions["model_report"] = load_report(reports_dir, served)
    storage = open_storage(params.serve)
    app.extensions["storage"] = storage
    app.extensions["drift_store"] = storage.drift
    app.extensions["feedback_limiter"] = RateLimiter(params.serve.feedback_per_minute)
    for blueprint in (pages.bp, api.bp, ops.bp, feedback_routes.bp, review.bp):
        app.register_blueprint(blueprint)
    spec = yaml.safe_load((Path(__file__).parent / "openapi.yaml").read_text(encoding="utf-8"))
    app.add_url_rule("/openapi.json", "openapi", lambda: jsonify(spec))
    security.init_app(app)
    version = state.classifier.card.version if state.classifier else "none"
    observability.init_app(app, version)
    _register_errors(app)
    return app


def _wants_json() -> bool:
    return request.path.startswith(JSON_PREFIXES)


# What a blueprint's routes could not do while the database is down: the start of their 503.
UNAVAILABLE = {
    "api": "drift counts unavailable",
    "feedback": "feedback cannot be stored now",
    "review": "feedback unavailable",
}


def _register_errors(app: Flask) -> None:
    @app.errorhandler(ClientError)
    def client_error(err: ClientError):
        return (jsonify(err.to_json()), err.status) if _wants_json() else pages.error_page(err)

    @app.errorhandler(DatabaseUnavailableError)
    def database_unavailable(err: DatabaseUnavailableError):
        # The database's name and the driver's text go to the log only.
        log.warning("%s %s: %s", request.method, request.path, err)
        what = UNAVAILABLE.get(request.blueprint or "", "unavailable")
        return client_error(ClientError(503, f"{what}: {err.public}"))

    @app.errorhandler(HTTPException)
    def http_error(err: HTTPException):
        message = err.description or err.name
        if err.code == 413:
            limit = app.config["MAX_CONTENT_LENGTH"]
            if (request.content_length or limit + 1) <= limit:
                # Within the size limit, Werkzeug's other 413 is its count of form parts.
                message = f"too many parts in the form: the limit is {request.max_form_parts}"
            else:
                message = f"upload too large: the limit is {limit / 1024 / 1024:g} MB per request"
        return client_error(ClientError(err.code or 500, message))

    @app.errorhandler(Exception)
    def unexpected(err: Exception):
        log.exception("unhandled error on %s %s", request.method, request.path)
        failure = ClientError(500, "internal error")
        if _wants_json():
            return jsonify(failure.to_json()), 500
        return pages.error_page(failure)
