"""Reports wiring: the report pages and incident documents."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Register the reports blueprint."""
    from service.reports import views

    app.register_blueprint(views.bp)
