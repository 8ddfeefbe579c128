"""CSRF protection for the HTML form and security headers on every response.

CSRF uses the double-submit cookie pattern: a random token in a SameSite=Strict, HttpOnly
cookie must match the token in the form. It needs no server-side secret, so it works across
gunicorn workers and restarts without shared state.
"""

from __future__ import annotations

import hmac
import secrets

from flask import Flask, Response, g, request

from webapp.errors import ClientError

CSRF_COOKIE = "csrf_token"
CSRF_FIELD = "csrf_token"

CSP = "; ".join(
    [
        "default-src 'self'",
        "img-src 'self' data: blob:",
        "script-src 'self'",
        "style-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)


def csrf_token() -> str:
    token = request.cookies.get(CSRF_COOKIE, "")
    if len(token) < 32:
        token = g.get("new_csrf") or secrets.token_urlsafe(32)
        g.new_csrf = token
    return token


def check_csrf() -> None:
    sent = request.form.get(CSRF_FIELD, "")
    cookie = request.cookies.get(CSRF_COOKIE, "")
    if not cookie or not hmac.compare_digest(sent.encode(), cookie.encode()):
        raise ClientError(400, "the form expired or did not come from this site: reload the page")


def init_app(app: Flask) -> None:
    @app.after_request
    def secure_headers(response: Response) -> Response:
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["Permissions-Policy"] = "camera=(), microphone=(), geolocation=()"
        if request.is_secure:
            response.headers["Strict-Transport-Security"] = "max-age=31536000"
        if g.get("new_csrf"):
            response.set_cookie(
                CSRF_COOKIE, g.new_csrf, httponly=True, samesite="Strict", secure=request.is_secure
            )
        return response
