"""Home, dashboard, health and language switch."""

from __future__ import annotations

import structlog
from flask import Blueprint, current_app, redirect, render_template, request, session, url_for
from flask_login import current_user

from service.auth import grants
from service.auth.access import public, roles_required
from service.core.db import database_write_problem, get_session, utcnow
from service.web.dashboard import build_dashboard
from service.web.wiring import LANGUAGES

bp = Blueprint("web", __name__)
log = structlog.get_logger("canhgac.web")


@bp.route("/")
@roles_required()
def home():
    """Send leaders, police and admins to the dashboard; officials get their start page."""
    if current_user.has_role("leader", "police", "admin"):
        return redirect(url_for("web.dashboard"))
    return render_template("home.html")


@bp.route("/dashboard")
@roles_required("leader", "police", "admin")
def dashboard():
    """Show the overview: incidents waiting, deadlines, alerts, silent agents, the trail."""
    settings = current_app.config["SETTINGS"]
    board = build_dashboard(get_session(), settings, list(current_user.roles), utcnow())
    # Grants of police, leader or admin wait for a second person: every watcher sees them here.
    return render_template("dashboard.html", board=board, settings=settings,
                           pending_grants=grants.open_grants(get_session(), board.now))


@bp.route("/healthz")
@public
def health():
    """Answer a health probe: 200 when the database takes a write (rolled back), else 503."""
    problem = database_write_problem(get_session())
    if problem is not None:
        # The exception's name goes to the operational log, not to an anonymous caller.
        log.warning("health_check_failed", database="not_writable", error=problem)
        return {"status": "unavailable", "database": "not_writable"}, 503
    return {"status": "ok", "database": "writable"}


@bp.route("/lang/<code>", methods=["POST"])
@public
def set_language(code: str):
    """Switch the interface language."""
    if code in LANGUAGES:
        session["lang"] = code
    target = request.form.get("next") or url_for("web.home")
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        target = url_for("web.home")
    return redirect(target)
