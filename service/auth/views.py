"""Login, logout, one's own password and one's own sessions."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlsplit

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from wtforms import DateField, PasswordField, SelectField, StringField
from wtforms.validators import DataRequired, EqualTo, InputRequired, Length

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


class SubstituteForm(Form):
    """Name a substitute for a date range (admins may choose whose leave it is)."""

    absent = SelectField(_l("Người nghỉ"), coerce=int, validate_choice=False)
    substitute = SelectField(_l("Người thay"), coerce=int, validate_choice=False)
    starts_on = DateField(_l("Nghỉ từ ngày"), validators=[
        InputRequired(_l("Nhập ngày bắt đầu nghỉ (ngày/tháng/năm)."))])
    ends_on = DateField(_l("Đến hết ngày"), validators=[
        InputRequired(_l("Nhập ngày kết thúc nghỉ (ngày/tháng/năm)."))])


class CancelSubstitutionForm(Form):
    """Cancel a substitution (CSRF only)."""


def _substitute_form(session, user) -> SubstituteForm:
    from sqlalchemy import select

    from service.auth.models import User
    from service.auth.substitutes import COVERED_ROLES

    form = SubstituteForm()
    people = session.scalars(select(User).where(User.is_disabled.is_(False)).order_by(User.username)).all()
    label = {u.id: f"{u.full_name or u.username} ({u.username})" for u in people}
    absent = [u for u in people if u.has_role(*COVERED_ROLES)]
    if not user.has_role("admin"):
        absent = [u for u in absent if u.id == user.id]
    form.absent.choices = [(u.id, label[u.id]) for u in absent]
    form.substitute.choices = [(u.id, label[u.id]) for u in people]
    if not form.is_submitted() and absent:
        form.absent.data = user.id if any(u.id == user.id for u in absent) else absent[0].id
    return form


@bp.route("/account/substitutes", methods=["GET", "POST"])
@roles_required()
def substitutes():
    """Name who stands in while a leader or police officer is on leave; list and cancel."""
    from service.auth import substitutes as subs
    from service.auth.models import Substitution, User

    session = get_session()
    user = current_user._get_current_object()
    form = _substitute_form(session, user)
    status = 200
    if form.validate_on_submit():
        absent = session.get(User, form.absent.data)
        substitute = session.get(User, form.substitute.data)
        if absent is None or substitute is None or form.absent.data not in {
                c[0] for c in form.absent.choices}:
            flash(_("Chọn người nghỉ và người thay trong danh sách."), "error")
            status = 400
        else:
            try:
                subs.name_substitute(session, absent, substitute, starts_on=form.starts_on.data,
                                     ends_on=form.ends_on.data, by=user)
            except subs.SubstitutionError as exc:
                session.rollback()
                flash(str(exc), "error")
                status = 400
            else:
                session.commit()
                flash(_("Đã chỉ định người thay."), "success")
                return redirect(url_for("auth.substitutes"))
    elif form.is_submitted():
        for errors in form.errors.values():
            for message in errors:
                flash(str(message), "error")
        status = 400
    from sqlalchemy import select

    if user.has_role("admin"):
        rows = session.scalars(select(Substitution).order_by(Substitution.id.desc()).limit(200)).all()
    else:
        rows = subs.substitutions_of(session, user)
    return render_template("auth/substitutes.html", form=form, rows=rows,
                           cancel_form=CancelSubstitutionForm(), today=subs.local_today(
                               current_app.config["SETTINGS"]), user=user), status


@bp.route("/account/substitutes/<int:substitution_id>/cancel", methods=["POST"])
@roles_required()
def cancel_substitute(substitution_id: int):
    """Cancel a substitution (the absent person or an admin)."""
    from flask import abort

    from service.auth import substitutes as subs
    from service.auth.models import Substitution

    session = get_session()
    row = session.get(Substitution, substitution_id)
    if row is None:
        abort(404)
    form = CancelSubstitutionForm()
    if form.validate_on_submit():
        try:
            subs.cancel_substitution(session, row, by=current_user._get_current_object())
        except subs.SubstitutionError as exc:
            session.rollback()
            flash(str(exc), "error")
        else:
            session.commit()
            flash(_("Đã hủy việc chỉ định người thay."), "success")
    return redirect(url_for("auth.substitutes"))
