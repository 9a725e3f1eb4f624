"""Per-request log context (request id, user, remote address) and security headers."""

from __future__ import annotations

import uuid

import structlog
from flask import Flask, g, request
from flask_login import current_user

CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)


def init_app(app: Flask) -> None:
    """Bind request context to every log line and add security headers to every answer."""
    log = structlog.get_logger("canhgac.request")

    @app.before_request
    def _bind() -> None:
        g.request_id = request.headers.get("X-Request-Id", "")[:64] or uuid.uuid4().hex
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(
            request_id=g.request_id, remote_addr=request.remote_addr
        )

    @app.after_request
    def _finish(response):
        user = getattr(current_user, "username", None) if current_user else None
        if user:
            structlog.contextvars.bind_contextvars(user=user)
        h = response.headers
        h.setdefault("Content-Security-Policy", CSP)
        h.setdefault("X-Content-Type-Options", "nosniff")
        h.setdefault("X-Frame-Options", "DENY")
        h.setdefault("Referrer-Policy", "no-referrer")
        h.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
        h.setdefault("Cross-Origin-Opener-Policy", "same-origin")
        if request.is_secure:
            h.setdefault("Strict-Transport-Security", "max-age=31536000")
        if request.endpoint != "static":
            h.setdefault("Cache-Control", "no-store")
        h["X-Request-Id"] = g.get("request_id", "")
        log.info("request", method=request.method, path=request.path, status=response.status_code)
        return response
