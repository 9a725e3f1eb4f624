"""Canh Gác: data-protection audit and incident response for Vietnamese communes."""

from __future__ import annotations

from typing import Any

from flask import Flask
from werkzeug.routing import IntegerConverter

from service.config import Settings, load_settings

__version__ = "0.1.0"


def create_app(settings: Settings | dict[str, Any] | None = None) -> Flask:
    """Create the Flask application, wiring each subsystem with its own init_app."""
    if not isinstance(settings, Settings):
        settings = load_settings(settings)
    from service.core import logging as core_logging

    core_logging.configure_logging(settings.data_dir, settings.log_level)

    app = Flask(__name__, template_folder="web/templates", static_folder="web/static")
    # Ids in URLs fit the database's integer columns; a larger number is a 404, not a 500.
    app.url_map.converters["int"] = _BoundedInt
    app.config["SETTINGS"] = settings
    app.config.update(
        SECRET_KEY=_secret_key(settings),
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=bool(
            settings.session_cookie_secure
            if settings.session_cookie_secure is not None
            else settings.base_url.startswith("https")
        ),
        REMEMBER_COOKIE_HTTPONLY=True,
        MAX_CONTENT_LENGTH=settings.max_body_bytes,
        WTF_CSRF_TIME_LIMIT=None,
    )

    from service.audit import wiring as audit_wiring
    from service.auth import login
    from service.core import db, requestlog
    from service.devices import views as devices_views
    from service.events import api as events_api
    from service.events import processing
    from service.incidents import views as incidents_views
    from service.notify import wiring as notify_wiring
    from service.reports import wiring as reports_wiring
    from service.web import wiring as web_wiring

    db.init_app(app)
    requestlog.init_app(app)
    web_wiring.init_app(app)
    login.init_app(app)
    audit_wiring.init_app(app)
    events_api.init_app(app)
    processing.init_app(app)
    incidents_views.init_app(app)
    notify_wiring.init_app(app)
    reports_wiring.init_app(app)
    devices_views.init_app(app)
    db.reads_first(app)  # after every view is registered
    return app


class _BoundedInt(IntegerConverter):
    def __init__(self, url_map, *args, **kwargs) -> None:
        kwargs.setdefault("max", 2**31 - 1)
        super().__init__(url_map, *args, **kwargs)


def _secret_key(settings: Settings) -> str:
    if settings.secret_key:
        return settings.secret_key
    # Without a configured key, keep a generated one under keys/ so sessions survive restarts.
    import secrets

    path = settings.keys_dir / "secret_key"
    if path.exists():
        return path.read_text().strip()
    settings.keys_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = secrets.token_urlsafe(48)
    from service.core.files import write_private

    write_private(path, key + "\n")
    return key
