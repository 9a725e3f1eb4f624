"""Home, health and language switch."""

from __future__ import annotations

from flask import Blueprint, redirect, render_template, request, session, url_for
from flask_login import current_user

from service.auth.access import public, roles_required
from service.web.wiring import LANGUAGES

bp = Blueprint("web", __name__)


@bp.route("/")
@roles_required()
def home():
    """Send each user to the page of their main role."""
    for role, endpoint in (
        ("leader", "web.dashboard"),
        ("police", "web.dashboard"),
        ("admin", "web.dashboard"),
    ):
        if current_user.has_role(role):
            return redirect(url_for(endpoint))
    return render_template("home.html")


@bp.route("/dashboard")
@roles_required("leader", "police", "admin")
def dashboard():
    """Show the overview page."""
    return render_template("home.html")


@bp.route("/healthz")
@public
def health():
    """Answer a liveness probe."""
    return {"status": "ok"}


@bp.route("/lang/<code>", methods=["POST"])
@public
def set_language(code: str):
    """Switch the interface language."""
    if code in LANGUAGES:
        session["lang"] = code
    target = request.form.get("next") or url_for("web.home")
    if not target.startswith("/") or target.startswith("//"):
        target = url_for("web.home")
    return redirect(target)
