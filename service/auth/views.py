"""Login and logout pages."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user, login_user, logout_user
from flask_wtf import FlaskForm
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, EqualTo, Length

from service.auth import operations
from service.auth.access import public, roles_required
from service.auth.login import keep_session_after_password_change, start_session_clock
from service.core.db import get_session

bp = Blueprint("auth", __name__)


class LoginForm(FlaskForm):
    """The login form."""

    username = StringField("username", validators=[DataRequired(), Length(max=64)])
    password = PasswordField("password", validators=[DataRequired(), Length(max=256)])


class ChangePasswordForm(FlaskForm):
    """Change one's own password: the current one first, the new one twice."""

    current = PasswordField(_l("Mật khẩu hiện tại"), validators=[
        DataRequired(_l("Nhập mật khẩu hiện tại.")), Length(max=256)])
    password = PasswordField(_l("Mật khẩu mới"), validators=[
        DataRequired(_l("Nhập mật khẩu mới.")), Length(max=256)])
    confirm = PasswordField(_l("Nhập lại mật khẩu mới"), validators=[
        EqualTo("password", _l("Hai lần nhập mật khẩu mới không khớp."))])


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
            start_session_clock(result.user)
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


@bp.route("/account/password", methods=["GET", "POST"])
@roles_required()
def change_own_password():
    """Let a logged-in user change their own password (the current one is asked again)."""
    form = ChangePasswordForm()
    if not form.validate_on_submit():
        for errors in form.errors.values():
            for error in errors:
                flash(str(error), "error")
        status = 400 if form.is_submitted() else 200
        return render_template("auth/password.html", form=form), status
    session = get_session()
    user = current_user._get_current_object()
    settings = current_app.config["SETTINGS"]
    # Asked again so an unlocked, unattended PC is not enough to take the account over; wrong
    # answers count towards the lockout, and a locked account is signed out here.
    refused = operations.check_current_password(
        session, user, form.current.data, remote_addr=request.remote_addr,
        max_failures=settings.login_max_failures, lockout_seconds=settings.login_lockout_seconds)
    if refused is not None:
        session.commit()
        if refused == "locked":
            logout_user()
            flash(_("Tài khoản tạm khóa do đăng nhập sai nhiều lần. Vui lòng thử lại sau."), "error")
            return redirect(url_for("auth.login"))
        flash(_("Mật khẩu hiện tại không đúng."), "error")
        return render_template("auth/password.html", form=form), 400
    try:
        operations.change_password(
            session, user, form.password.data,
            min_password_length=current_app.config["SETTINGS"].password_min_length,
            by=user.username,
        )
    except operations.AccountError as exc:
        session.rollback()
        flash(str(exc), "error")
        return render_template("auth/password.html", form=form), 400
    session.commit()
    keep_session_after_password_change(user)  # this session goes on; every other one ends
    flash(_("Đã đổi mật khẩu."), "success")
    return redirect(url_for("web.home"))
