"""flask-login wiring: the user loader and session cookie settings."""

from __future__ import annotations

from flask import Flask
from flask_login import LoginManager

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


def init_app(app: Flask) -> None:
    """Register flask-login and the auth views."""
    from service.auth.views import bp

    login_manager.login_message = None
    login_manager.init_app(app)
    app.register_blueprint(bp)
