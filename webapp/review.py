"""Reviewing feedback, behind the secret FEEDBACK_TOKEN: a page for people, an API for export.

With no FEEDBACK_TOKEN set none of these routes exists (404). The token is given as HTTP Basic
auth (any user name; browsers ask for it) or as `Authorization: Bearer <token>`, and compared
in constant time. The page's accept/reject forms are POSTs, accepted only from this app's own
origin (Sec-Fetch-Site same-origin, or an Origin equal to the app's): a browser that remembers
the password cannot be made to review from another site, not even a sibling subdomain.
"""

from __future__ import annotations

import hmac

from flask import (
    Blueprint,
    Response,
    current_app,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)

from image_classifier.monitoring.feedback_store import MAX_ID, STATUSES
from image_classifier.preprocessing import ImageError, encode_png, load_image
from webapp.errors import ClientError, json_body
from webapp.feedback_routes import feedback_store

bp = Blueprint("review", __name__)

THUMB_SIZE = 128
PAGE_SIZE = 60
DECISIONS = {"accept": "accepted", "reject": "rejected"}


def _given_token() -> str | None:
    """The token as the password of HTTP Basic auth (any user name) or as a Bearer token;
    Werkzeug parses both (request.authorization), a malformed header as none."""
    auth = request.authorization
    if auth is None:
        return None
    if auth.type == "bearer":
        return auth.token
    # Not Digest's "password" parameter, which Werkzeug also exposes as .password.
    return auth.password if auth.type == "basic" else None


@bp.before_request
def require_token() -> None:
    expected = current_app.config["FEEDBACK_TOKEN"]
    if not expected:
        raise ClientError(404, "not found")
    if request.method == "POST":
        same_origin_only()
    given = _given_token()
    if given is None or not hmac.compare_digest(given.encode(), expected.encode()):
        raise ClientError(401, "this needs the feedback token (FEEDBACK_TOKEN)")


@bp.after_request
def no_store(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    if response.status_code == 401:
        response.headers["WWW-Authenticate"] = 'Basic realm="feedback review", charset="UTF-8"'
    return response


def same_origin_only() -> None:
    """Stricter than check_same_site for the POSTs a remembered password authorises: a
    browser must say same-origin (or none: typed by the user), not merely same-site."""
    fetch_site = request.headers.get("Sec-Fetch-Site")
    if fetch_site is not None and fetch_site not in ("same-origin", "none"):
        raise ClientError(403, "review requests must come from this site's own pages")


@bp.get("/review")
def review_page():
    store = feedback_store()
    items = store.items("pending", limit=PAGE_SIZE)
    counts = store.counts()
    return render_template("review.html", items=items, counts=counts)


@bp.get("/review/<int:item_id>/thumb.png")
def thumbnail(item_id: int):
    """Re-encoded from the stored image: the browser never gets the uploaded bytes here."""
    store = feedback_store()
    data = store.image(item_id)
    if data is None:
        raise ClientError(404, f"no feedback item {item_id} with an image")
    try:
        pixels = load_image(data, THUMB_SIZE, "rgb")
    except ImageError as exc:
        raise ClientError(422, f"item {item_id}: {exc}") from None
    return encode_png(pixels.astype("uint8")), 200, {"Content-Type": "image/png"}


@bp.post("/review/<int:item_id>")
def review_form(item_id: int):
    _decide(item_id, DECISIONS.get(request.form.get("decision", ""), ""))
    return redirect(url_for("review.review_page"), code=303)


def _decide(item_id: int, decision: str) -> None:
    if decision not in DECISIONS.values():
        raise ClientError(400, "decision must be accept or reject")
    found = feedback_store().review(item_id, decision)
    if not found:
        raise ClientError(404, f"no feedback item {item_id}")


@bp.get("/api/v1/feedback")
def list_items():
    """Items by status, oldest first, a page at a time (?after=<last id>), for export."""
    status = request.args.get("status", "accepted")
    if status not in STATUSES:
        raise ClientError(400, f"status must be one of {', '.join(STATUSES)}")
    try:
        after = int(request.args.get("after", "0"))
        limit = min(max(int(request.args.get("limit", "100")), 1), 1000)
        if not 0 <= after <= MAX_ID:
            raise ValueError
    except ValueError:
        raise ClientError(400, f"after must be a whole number 0..{MAX_ID}, limit 1..1000") from None
    items = feedback_store().items(status, after, limit)
    return jsonify(items=[item.to_json() for item in items])


@bp.get("/api/v1/feedback/<int:item_id>/image")
def item_image(item_id: int):
    data = feedback_store().image(item_id)
    if data is None:
        raise ClientError(404, f"no feedback item {item_id}")
    headers = {
        "Content-Type": "application/octet-stream",
        "Content-Disposition": f'attachment; filename="feedback-{item_id}"',
    }
    return data, 200, headers


@bp.post("/api/v1/feedback/<int:item_id>/review")
def review_api(item_id: int):
    body = json_body()
    decision = body.get("decision") if isinstance(body, dict) else None
    _decide(item_id, DECISIONS.get(decision, decision) if isinstance(decision, str) else "")
    return jsonify(id=item_id, status=DECISIONS.get(decision, decision))
