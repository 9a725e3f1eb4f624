"""Web wiring: CSRF, Babel (Vietnamese first), time formatting, error pages, home."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from flask import Flask, current_app, jsonify, render_template, request, session
from flask_babel import Babel
from flask_wtf.csrf import CSRFError, CSRFProtect

csrf = CSRFProtect()
babel = Babel()
LANGUAGES = ("vi", "en")


def select_locale() -> str:
    """Return the interface language: the user's choice, else Vietnamese."""
    chosen = session.get("lang")
    return chosen if chosen in LANGUAGES else "vi"


def local_time(value: datetime | None, with_seconds: bool = False) -> str:
    """Format an aware UTC datetime for people, in the commune's time zone (dd/mm/yyyy HH:MM)."""
    if value is None:
        return "—"
    zone = ZoneInfo(current_app.config["SETTINGS"].timezone)
    fmt = "%d/%m/%Y %H:%M:%S" if with_seconds else "%d/%m/%Y %H:%M"
    return value.astimezone(zone).strftime(fmt)


def init_app(app: Flask) -> None:
    """Register CSRF protection, Babel, template helpers, error pages and the home views."""
    from service.web import views

    csrf.init_app(app)
    babel.init_app(
        app,
        locale_selector=select_locale,
        default_locale="vi",
        default_timezone=app.config["SETTINGS"].timezone,
        default_translation_directories="translations",
    )
    app.jinja_env.filters["local_time"] = local_time
    app.jinja_env.globals["LANGUAGES"] = LANGUAGES
    app.jinja_env.globals["current_locale"] = select_locale
    app.register_blueprint(views.bp)

    def _wants_json() -> bool:
        return request.path.startswith("/api/")

    @app.errorhandler(CSRFError)
    def _csrf_error(exc):
        if _wants_json():
            return jsonify(error="csrf", detail=exc.description), 400
        return render_template("error.html", code=400, message=exc.description), 400

    for code in (400, 401, 403, 404, 405, 413, 429, 500):

        def _handler(exc, code=code):
            if _wants_json():
                return jsonify(error=getattr(exc, "name", "error"), status=code), code
            return render_template("error.html", code=code, message=None), code

        app.register_error_handler(code, _handler)
