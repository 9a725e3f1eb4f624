"""Login, logout, one's own password and one's own sessions."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlsplit

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, EqualTo, Length

from service.auth import operations, sessions
from service.auth.access import public, roles_required
from service.auth.login import current_session_id, sign_in, sign_out
from service.core.db import get_session, utcnow
from service.web.forms import Form

bp = Blueprint("auth", __name__)


class LoginForm(Form):
    """The login form."""

    username = StringField("username", validators=[DataRequired(), Length(max=64)])
    password = PasswordField("password", validators=[DataRequired(), Length(max=256)])


class ChangePasswordForm(Form):
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
        if result.user is not None:
            sign_in(result.user)  # the session row and the auth.login entry commit together
            session.commit()
            return redirect(_safe_next(request.args.get("next")))
        session.commit()
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
    sign_out()  # the server-side session ends: a saved copy of the cookie opens nothing
    session.commit()
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
            sign_out(sessions.LOCKED)
            session.commit()
            flash(_("Tài khoản tạm khóa do đăng nhập sai nhiều lần. Vui lòng thử lại sau."), "error")
            return redirect(url_for("auth.login"))
        flash(_("Mật khẩu hiện tại không đúng."), "error")
        return render_template("auth/password.html", form=form), 400
    try:
        operations.change_password(
            session, user, form.password.data,
            min_password_length=current_app.config["SETTINGS"].password_min_length,
            by=user.username, keep_session_id=current_session_id(),  # every other one ends
        )
    except operations.AccountError as exc:
        session.rollback()
        flash(str(exc), "error")
        return render_template("auth/password.html", form=form), 400
    session.commit()
    flash(_("Đã đổi mật khẩu."), "success")
    return redirect(url_for("web.home"))


class SignOutEverywhereForm(Form):
    """Sign out everywhere: the CSRF token is the whole form."""


@bp.route("/account/sessions", methods=["GET", "POST"])
@roles_required()
def own_sessions():
    """List the user's open sessions; a POST signs the user out everywhere, this browser too."""
    form = SignOutEverywhereForm()
    session = get_session()
    user = current_user._get_current_object()
    if form.validate_on_submit():
        count = sessions.sign_out_everywhere(session, user, by=user.username)
        sign_out(sessions.SIGNED_OUT_EVERYWHERE)
        session.commit()
        flash(_("Đã đăng xuất khỏi mọi nơi (%(n)s phiên).", n=count), "info")
        return redirect(url_for("auth.login"))
    settings = current_app.config["SETTINGS"]
    rows = sessions.open_sessions(session, user, idle=timedelta(minutes=settings.session_idle_minutes),
                                  max_life=timedelta(hours=settings.session_max_hours), now=utcnow())
    status = 400 if form.is_submitted() else 200
    return render_template("auth/sessions.html", form=form, rows=rows,
                           current_id=current_session_id()), status
