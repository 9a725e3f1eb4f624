"""flask-login wiring: the user loader, session cookie settings and server-side session checks."""

from __future__ import annotations

from datetime import timedelta

from flask import Flask, current_app, flash, g, redirect, request, session, url_for
from flask_babel import gettext as _
from flask_login import LoginManager, login_user, logout_user

from service.auth import sessions
from service.auth.access import wants_json
from service.auth.models import User
from service.core.db import get_session, utcnow, writing

login_manager = LoginManager()
login_manager.login_view = "auth.login"
login_manager.session_protection = "strong"

# Cookie key holding the random token of the server-side session (service/auth/sessions.py).
SESSION_KEY = "sid"
# Refresh last_seen_at at most this often: every refresh is a database write.
_SEEN_RESOLUTION = timedelta(seconds=60)


@login_manager.user_loader
def _load_user(user_id: str) -> User | None:
    if not user_id.isdigit():
        return None
    user = get_session().get(User, int(user_id))
    return user if user is not None and user.is_active else None


def _limits() -> tuple[timedelta, timedelta]:
    settings = current_app.config["SETTINGS"]
    return (timedelta(minutes=settings.session_idle_minutes),
            timedelta(hours=settings.session_max_hours))


def sign_in(user: User) -> None:
    """Open a server-side session for a user who just proved who they are, and log them in.

    The caller commits (the session row and the ``auth.login`` entry go in together).
    """
    previous = current_session()
    if previous is not None:  # signing in again in this browser: the old session ends
        sessions.end_session(previous, sessions.REPLACED)
    row, token = sessions.open_session(get_session(), user, remote_addr=request.remote_addr)
    login_user(user)
    session[SESSION_KEY] = token
    g.user_session = row


def sign_out(reason: str = sessions.LOGOUT) -> None:
    """End this browser's server-side session and log it out (the caller commits)."""
    row = current_session()
    if row is not None:
        sessions.end_session(row, reason)
    logout_user()
    session.pop(SESSION_KEY, None)
    g.pop("user_session", None)


def current_session():
    """Return this request's open server-side session row, or None (anonymous, API)."""
    return g.get("user_session")


def current_session_id() -> int | None:
    """Return the id of this request's server-side session (to keep it), or None."""
    row = current_session()
    return row.id if row is not None else None


def _check_session():
    """Refuse a browser whose server-side session is gone, ended, idle or too old, before any view.

    Commune PCs are shared: an unattended, signed-in police or leader account would open the
    trail to whoever sits down next (idle and absolute limits). Logout, a password or role
    change, disabling and "sign out everywhere" end the row, so a saved cookie opens nothing.
    """
    # Static files neither need nor refresh a session; the API is token-authenticated and the
    # browser session plays no part there. Anonymous requests touch nothing.
    if request.endpoint == "static" or request.blueprint == "api" or "_user_id" not in session:
        return None
    db = get_session()
    row = sessions.find_session(db, session.get(SESSION_KEY))
    now = utcnow()
    idle, max_life = _limits()
    reason = None
    if row is None or row.is_ended or str(row.user_id) != str(session.get("_user_id")):
        reason = "ended"
    else:
        reason = sessions.expiry_reason(row, now, idle=idle, max_life=max_life)
    if reason is None:
        g.user_session = row
        if now - row.last_seen_at >= _SEEN_RESOLUTION:
            with writing(db):
                row.last_seen_at = now
                db.commit()
        return None
    if row is not None and not row.is_ended:
        with writing(db):
            sessions.end_session(row, reason, now)
            db.commit()
    logout_user()
    session.pop(SESSION_KEY, None)
    if wants_json():
        return None  # anonymous from here on: a protected route answers a JSON 401
    flash(_("Phiên làm việc đã hết hạn. Vui lòng đăng nhập lại."), "info")
    return redirect(url_for("auth.login", next=request.full_path if request.method == "GET" else None))


def init_app(app: Flask) -> None:
    """Register flask-login, the server-side session check and the auth views."""
    from service.auth.grant_views import bp as grants_bp
    from service.auth.views import bp

    login_manager.login_message = None
    login_manager.init_app(app)
    app.before_request(_check_session)
    app.register_blueprint(bp)
    app.register_blueprint(grants_bp)
