"""Login and logout pages."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_user, logout_user
from flask_wtf import FlaskForm
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, Length

from service.auth import operations
from service.auth.access import public, roles_required
from service.core.db import get_session

bp = Blueprint("auth", __name__)


class LoginForm(FlaskForm):
    """The login form."""

    username = StringField("username", validators=[DataRequired(), Length(max=64)])
    password = PasswordField("password", validators=[DataRequired(), Length(max=256)])


def _safe_next(target: str | None) -> str:
    # Only local paths: an open redirect would let a phishing mail borrow our login page.
    if target and target.startswith("/") and not target.startswith("//"):
        parts = urlsplit(target)
        if not parts.scheme and not parts.netloc:
            return target
    return url_for("web.home")


@bp.route("/login", methods=["GET", "POST"])
@public
def login():
    """Show the login form and log the user in."""
    form = LoginForm()
    if form.validate_on_submit():
        settings = current_app.config["SETTINGS"]
        session = get_session()
        result = operations.authenticate(
            session,
            form.username.data,
            form.password.data,
            remote_addr=request.remote_addr,
            max_failures=settings.login_max_failures,
            lockout_seconds=settings.login_lockout_seconds,
        )
        session.commit()
        if result.user is not None:
            login_user(result.user)
            return redirect(_safe_next(request.args.get("next")))
        if result.reason == "locked":
            flash(_("Tài khoản tạm khóa do đăng nhập sai nhiều lần. Vui lòng thử lại sau."), "error")
        else:
            flash(_("Tên đăng nhập hoặc mật khẩu không đúng."), "error")
        return render_template("auth/login.html", form=form), 401
    return render_template("auth/login.html", form=form)


@bp.route("/logout", methods=["POST"])
@roles_required()
def logout():
    """Log the user out."""
    session = get_session()
    operations.record_logout(session, current_user, request.remote_addr)
    session.commit()
    logout_user()
    flash(_("Đã đăng xuất."), "info")
    return redirect(url_for("auth.login"))
