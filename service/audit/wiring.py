"""Audit trail wiring: the trail views for police."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Register the audit-trail views."""
    from service.audit import tlog_views, views

    app.register_blueprint(views.bp)
    tlog_views.init_app(app)
