"""Cross-site request refusal, proxy trust and security headers on every response.

Why no CSRF token: nothing here acts on a user's behalf. There are no accounts, no cookies and
no state a request changes except anonymous prediction counts, and the JSON API, which any
program may call, does exactly what the form does. A token on the form protected nothing the
API left open. What a hostile page *can* do is make its visitors' browsers post images here
(CORS does not stop a plain form or fetch POST), spending our workers and skewing the drift
counts. So every POST that a browser marks as cross-site (Sec-Fetch-Site, sent by current
browsers over HTTPS) or whose Origin is another site or "null" (sandboxed frames) is refused
with 403; programs (curl, SDKs) send neither header and are unaffected. A sibling subdomain is
"same-site" and allowed: give the app its own registrable domain if that matters.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit

from flask import Flask, Response, request
from werkzeug.middleware.proxy_fix import ProxyFix

from webapp.errors import ClientError

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


def check_same_site() -> None:
    """403 for a browser POST coming from another site (see the module docstring)."""
    if request.method != "POST":
        return
    fetch_site = request.headers.get("Sec-Fetch-Site")
    if fetch_site is not None:
        # Set by the browser itself (pages cannot forge it): the most reliable signal. Sent
        # over HTTPS and to localhost only; elsewhere Origin decides.
        if fetch_site == "cross-site":
            raise ClientError(403, "cross-site requests are refused: post from this site's page")
        return
    origin = request.headers.get("Origin")  # older browsers
    if origin is not None:
        try:
            parts = urlsplit(origin)
        except ValueError:  # "http://[::1": no browser sends it, so no page of ours did
            parts = None
        if parts is None or (parts.scheme, parts.netloc) != (request.scheme, request.host):
            raise ClientError(403, f"cross-site requests are refused (Origin {origin[:100]})")


def trust_proxies(app: Flask) -> None:
    """Trust X-Forwarded-* only as far as the deployment's proxies set them.

    PROXY_HOPS (default 1: Heroku's router, or one ingress / load balancer) is how many
    proxies in front of the app append to X-Forwarded-For and -Proto; 0 when clients connect
    directly. X-Forwarded-Host is trusted only with PROXY_TRUST_HOST=1, for a proxy that sets
    it: Heroku's router passes the client's Host through and does not."""
    hops = int(os.environ.get("PROXY_HOPS", "1"))
    if hops < 0:
        raise ValueError(f"PROXY_HOPS must be >= 0 (got {hops})")
    host = hops if os.environ.get("PROXY_TRUST_HOST", "") == "1" else 0
    if hops:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=host)


def init_app(app: Flask) -> None:
    @app.after_request
    def secure_headers(response: Response) -> Response:
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Frame-Options"] = "DENY"
        # same-origin, not no-referrer: under no-referrer browsers send "Origin: null" on the
        # page's own POSTs, which check_same_site could not tell from a sandboxed frame's
        # (plain HTTP gets no Sec-Fetch-Site). Other sites still get no referrer.
        response.headers["Referrer-Policy"] = "same-origin"
        response.headers["Permissions-Policy"] = "camera=(), microphone=(), geolocation=()"
        if request.is_secure:
            response.headers["Strict-Transport-Security"] = "max-age=31536000"
        return response

    app.before_request(check_same_site)
