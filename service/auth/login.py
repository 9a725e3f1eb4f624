"""flask-login wiring: the user loader, session cookie settings and session expiry."""

from __future__ import annotations

import hashlib
import time

from flask import Flask, current_app, flash, redirect, request, session, url_for
from flask_babel import gettext as _
from flask_login import LoginManager, current_user, logout_user

from service.auth.models import User
from service.core.db import get_session

login_manager = LoginManager()
login_manager.login_view = "auth.login"
login_manager.session_protection = "strong"


@login_manager.user_loader
def _load_user(user_id: str) -> User | None:
    if not user_id.isdigit():
        return None
    user = get_session().get(User, int(user_id))
    return user if user is not None and user.is_active else None


# Session keys: when this sign-in started and when it was last used (seconds, server clock).
SIGNED_IN_AT = "signed_in_at"
SEEN_AT = "seen_at"
# A mark of the password the session was opened with: a changed or reset password ends
# every other session (the cookie is signed, so the mark cannot be forged).
PASSWORD_MARK = "pw"  # noqa: S105 - a session key name, not a password
# Refresh the "last used" mark at most this often: every refresh re-sends the cookie.
_SEEN_RESOLUTION_S = 60


def password_mark(user: User) -> str:
    """Return a short digest of the user's password hash (never the hash itself)."""
    return hashlib.sha256(user.password_hash.encode()).hexdigest()[:16]


def start_session_clock(user: User) -> None:
    """Mark the session as signed in now with this password (call right after ``login_user``)."""
    now = int(time.time())
    session[SIGNED_IN_AT] = now
    session[SEEN_AT] = now
    session[PASSWORD_MARK] = password_mark(user)


def keep_session_after_password_change(user: User) -> None:
    """Let this session go on with the new password (its sign-in time is kept)."""
    session[PASSWORD_MARK] = password_mark(user)


def _expire_idle_session():
    """Sign out a browser left unused too long, or signed in for too long, before any view runs.

    Commune PCs are shared: an unattended, signed-in police or leader account would open the
    trail to whoever sits down next. A password changed or reset since sign-in also ends the
    session. The marks live in the signed session cookie.
    """
    # Anonymous requests never touch flask-login here (loading no one would still run its
    # session protection and send a cookie-clearing header).
    # Static files neither need nor refresh a session: no user load per stylesheet or script.
    if request.endpoint == "static" or "_user_id" not in session or not current_user.is_authenticated:
        return None
    settings = current_app.config["SETTINGS"]
    now = int(time.time())
    seen = session.get(SEEN_AT)
    started = session.get(SIGNED_IN_AT)
    if (not isinstance(seen, int) or not isinstance(started, int)
            or now - seen > settings.session_idle_minutes * 60
            or now - started > settings.session_max_hours * 3600
            or session.get(PASSWORD_MARK) != password_mark(current_user)):
        logout_user()
        for key in (SEEN_AT, SIGNED_IN_AT, PASSWORD_MARK):
            session.pop(key, None)
        if request.blueprint == "api":
            return None  # token-authenticated: the browser session plays no part
        flash(_("Phiên làm việc đã hết hạn. Vui lòng đăng nhập lại."), "info")
        return redirect(url_for("auth.login", next=request.full_path if request.method == "GET" else None))
    if now - seen >= _SEEN_RESOLUTION_S:
        session[SEEN_AT] = now
    return None


def init_app(app: Flask) -> None:
    """Register flask-login, the session expiry check and the auth views."""
    from service.auth.views import bp

    login_manager.login_message = None
    login_manager.init_app(app)
    app.before_request(_expire_idle_session)
    app.register_blueprint(bp)
