"""Admin pages: users and roles, ingest tokens, agents, notification settings, policy status.

Admins never see the audit trail's content here; every change goes through
service.auth.operations, which writes the audit entry, and the view commits once.
Record ids in URLs are database ids; names, e-mail and phone numbers travel in POST bodies.
"""

from __future__ import annotations

import secrets
from datetime import timedelta

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    url_for,
)
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy import select

from service.admin import forms
from service.admin.status import notification_status, policy_status
from service.auth import grants, operations, sessions
from service.auth.access import roles_required
from service.auth.login import current_session_id
from service.auth.models import IngestToken, User
from service.core.db import get_session, utcnow
from service.events.models import Agent
from service.web.labels import ROLE_NAMES

bp = Blueprint("admin", __name__, url_prefix="/admin")
POLICY_STATE_KEY = "canhgac.policy_state"


def _settings():
    return current_app.config["SETTINGS"]


def _get_user(user_id: int) -> User:
    user = get_session().get(User, user_id)
    if user is None:
        abort(404)
    return user


def _active_admins() -> list[User]:
    users = get_session().scalars(select(User).where(User.is_disabled.is_(False)))
    return [u for u in users if "admin" in u.roles]


def _flash_errors(form) -> None:
    for message in forms.form_errors(form):
        flash(message, "error")


def _flash_grant(grant) -> None:
    if grant is not None:
        flash(_("Vai trò %(roles)s của %(name)s chờ một lãnh đạo (hoặc một quản trị viên khác) "
                "phê duyệt: đề nghị số %(id)s.",
                roles=", ".join(str(ROLE_NAMES[r]) for r in grant.roles),
                name=grant.user.username, id=grant.id), "info")


def _refused(exc: operations.AccountError) -> None:
    # Operation messages are Vietnamese sentences from auth.operations; the form validators
    # catch the usual mistakes first with translated messages, so this is the rare case.
    flash(_("Không thực hiện được: %(reason)s", reason=str(exc)), "error")


@bp.route("/")
@roles_required("admin")
def index():
    """Open the admin section at the user list."""
    return redirect(url_for("admin.users"))


@bp.route("/users")
@roles_required("admin")
def users():
    """List every account with its roles and state."""
    rows = get_session().scalars(select(User).order_by(User.username)).all()
    return render_template("admin/users.html", users=rows, now=utcnow(),
                           pending_grants=grants.open_grants(get_session()))


@bp.route("/users/new", methods=["GET", "POST"])
@roles_required("admin")
def user_new():
    """Show and handle the form that creates an account."""
    form = forms.CreateUserForm()
    if form.validate_on_submit():
        session = get_session()
        try:
            # Police, leader and admin wait for a second person (service.auth.grants).
            user, grant = grants.create_user(
                session, username=form.username.data, password=form.password.data,
                roles=list(form.roles.data), email=form.email.data, unit=form.unit.data or None,
                phone=form.phone.data or None, full_name=form.full_name.data or "",
                min_password_length=_settings().password_min_length,
                by=current_user._get_current_object(),
            )
        except operations.AccountError as exc:
            session.rollback()
            _refused(exc)
        else:
            session.commit()
            flash(_("Đã tạo tài khoản %(name)s.", name=user.username), "success")
            _flash_grant(grant)
            return redirect(url_for("admin.user_edit", user_id=user.id))
    status = 400 if form.is_submitted() else 200
    return render_template("admin/user_new.html", form=form), status


def _render_user(user: User, status: int = 200, *, new_password: str | None = None,
                 roles_form=None, password_form=None, disable_form=None, phone_form=None):
    roles_form = roles_form or forms.RolesForm(data={"roles": list(user.roles)})
    phone_form = phone_form or forms.PhoneForm(formdata=None, data={"phone": user.phone or ""})
    pending = grants.open_grants(get_session(), user=user)
    settings = _settings()
    open_sessions = sessions.open_sessions(
        get_session(), user, idle=timedelta(minutes=settings.session_idle_minutes),
        max_life=timedelta(hours=settings.session_max_hours))
    return render_template(
        "admin/user_edit.html", user=user, now=utcnow(), new_password=new_password,
        lockouts=operations.active_lockouts(get_session(), user), open_sessions=open_sessions,
        roles_form=roles_form, password_form=password_form or forms.ResetPasswordForm(),
        disable_form=disable_form or forms.DisableUserForm(), pending_grants=pending,
        phone_form=phone_form,
    ), status


@bp.route("/users/<int:user_id>")
@roles_required("admin")
def user_edit(user_id: int):
    """Show one account: roles, password reset, disable or enable."""
    return _render_user(_get_user(user_id))


@bp.route("/users/<int:user_id>/roles", methods=["POST"])
@roles_required("admin")
def user_roles(user_id: int):
    """Replace an account's roles: police, leader and admin are only requested here."""
    user = _get_user(user_id)
    form = forms.RolesForm()
    if not form.validate_on_submit():
        _flash_errors(form)
        return _render_user(user, 400, roles_form=form)
    roles = list(form.roles.data)
    if "admin" in user.roles and "admin" not in roles and not user.is_disabled:
        if user.id == current_user.id:
            flash(_("Bạn không thể tự bỏ vai trò quản trị của mình."), "error")
            return _render_user(user, 400, roles_form=form)
        if len(_active_admins()) <= 1:
            flash(_("Không thể bỏ vai trò quản trị của quản trị viên cuối cùng."), "error")
            return _render_user(user, 400, roles_form=form)
    session = get_session()
    try:
        # Removals and "official" apply now; police, leader and admin become a request.
        grant = grants.change_roles(session, user, roles, by=current_user._get_current_object(),
                                    keep_session_id=current_session_id())
    except operations.AccountError as exc:
        session.rollback()
        _refused(exc)
        return _render_user(user, 400, roles_form=form)
    session.commit()
    flash(_("Đã cập nhật vai trò của %(name)s.", name=user.username), "success")
    _flash_grant(grant)
    return redirect(url_for("admin.user_edit", user_id=user.id))


@bp.route("/users/<int:user_id>/phone", methods=["POST"])
@roles_required("admin")
def user_phone(user_id: int):
    """Set or clear an account's Vietnamese mobile number (SMS notices go there)."""
    user = _get_user(user_id)
    form = forms.PhoneForm()
    if not form.validate_on_submit():
        _flash_errors(form)
        return _render_user(user, 400, phone_form=form)
    session = get_session()
    try:
        operations.set_phone(session, user, form.phone.data or None, by=current_user.username)
    except operations.AccountError as exc:
        session.rollback()
        _refused(exc)
        return _render_user(user, 400, phone_form=form)
    session.commit()
    flash(_("Đã cập nhật số điện thoại của %(name)s.", name=user.username), "success")
    return redirect(url_for("admin.user_edit", user_id=user.id))


@bp.route("/users/<int:user_id>/password", methods=["POST"])
@roles_required("admin")
def user_password(user_id: int):
    """Set a new password, typed by the admin or generated and shown once."""
    user = _get_user(user_id)
    form = forms.ResetPasswordForm()
    if not form.validate_on_submit():
        _flash_errors(form)
        return _render_user(user, 400, password_form=form)
    if user.id == current_user.id:
        # One's own password is changed where the current one is asked again (and counted).
        flash(_("Đổi mật khẩu của chính bạn tại trang Đổi mật khẩu."), "error")
        return _render_user(user, 400, password_form=form)
    generated = None
    password = form.password.data
    if not password:
        # 15 random bytes → 20 URL-safe characters: easy to read out, far above any minimum.
        generated = password = secrets.token_urlsafe(15)
    session = get_session()
    try:
        operations.change_password(session, user, password,
                                   min_password_length=_settings().password_min_length,
                                   by=current_user.username)
    except operations.AccountError as exc:
        session.rollback()
        _refused(exc)
        return _render_user(user, 400, password_form=form)
    session.commit()
    if generated:
        return _render_user(user, new_password=generated, password_form=forms.ResetPasswordForm(
            formdata=None))
    flash(_("Đã đặt mật khẩu mới cho %(name)s.", name=user.username), "success")
    return redirect(url_for("admin.user_edit", user_id=user.id))


@bp.route("/users/<int:user_id>/disable", methods=["POST"])
@roles_required("admin")
def user_disable(user_id: int):
    """Disable an account (accounts are never deleted)."""
    user = _get_user(user_id)
    form = forms.DisableUserForm()
    if not form.validate_on_submit():
        _flash_errors(form)
        return _render_user(user, 400, disable_form=form)
    if user.id == current_user.id:
        flash(_("Bạn không thể tự vô hiệu hóa tài khoản của mình."), "error")
        return _render_user(user, 400, disable_form=form)
    if "admin" in user.roles and not user.is_disabled and len(_active_admins()) <= 1:
        flash(_("Không thể vô hiệu hóa quản trị viên cuối cùng."), "error")
        return _render_user(user, 400, disable_form=form)
    session = get_session()
    if not user.is_disabled:
        operations.disable_user(session, user, by=current_user.username)
        session.commit()
    flash(_("Đã vô hiệu hóa tài khoản %(name)s.", name=user.username), "success")
    return redirect(url_for("admin.user_edit", user_id=user.id))


def _account_action(user_id: int, operation, done):
    """Run a one-button account operation after the CSRF check, commit, and say it was done."""
    user = _get_user(user_id)
    form = forms.AccountActionForm()
    if not form.validate_on_submit():
        _flash_errors(form)
        return _render_user(user, 400)
    session = get_session()
    operation(session, user, by=current_user.username)
    session.commit()
    flash(done(user.username), "success")
    return redirect(url_for("admin.user_edit", user_id=user.id))


@bp.route("/users/<int:user_id>/sessions/end", methods=["POST"])
@roles_required("admin")
def user_end_sessions(user_id: int):
    """Sign an account out everywhere: every open session ends at once (audited)."""
    return _account_action(user_id, sessions.sign_out_everywhere,
                           lambda name: _("Đã đăng xuất %(name)s khỏi mọi nơi.", name=name))


@bp.route("/users/<int:user_id>/unlock", methods=["POST"])
@roles_required("admin")
def user_unlock(user_id: int):
    """Lift an account's login lockouts (every source address and account-wide)."""
    return _account_action(user_id, operations.unlock_user,
                           lambda name: _("Đã gỡ khóa đăng nhập của %(name)s.", name=name))


@bp.route("/users/<int:user_id>/enable", methods=["POST"])
@roles_required("admin")
def user_enable(user_id: int):
    """Enable a disabled account again."""
    return _account_action(user_id, operations.enable_user,
                           lambda name: _("Đã kích hoạt lại tài khoản %(name)s.", name=name))


def _render_tokens(status: int = 200, *, form=None, new_token: str | None = None,
                   new_row: IngestToken | None = None):
    rows = get_session().scalars(
        select(IngestToken).order_by(IngestToken.revoked_at.is_not(None), IngestToken.source,
                                     IngestToken.id)).all()
    return render_template("admin/tokens.html", tokens=rows, form=form or forms.CreateTokenForm(),
                           revoke_form=forms.RevokeTokenForm(), new_token=new_token,
                           new_row=new_row), status


@bp.route("/tokens")
@roles_required("admin")
def tokens():
    """List ingest tokens (only their public prefix) and offer to create one."""
    return _render_tokens()


@bp.route("/tokens/new", methods=["POST"])
@roles_required("admin")
def token_create():
    """Create an ingest token and show it once; only its hash is kept."""
    form = forms.CreateTokenForm()
    if not form.validate_on_submit():
        _flash_errors(form)
        return _render_tokens(400, form=form)
    session = get_session()
    try:
        row, token = operations.create_token(session, form.source.data, by=current_user.username,
                                             scope=form.scope.data)
    except operations.AccountError as exc:
        session.rollback()
        _refused(exc)
        return _render_tokens(400, form=form)
    row.created_by_id = current_user.id
    session.commit()
    # Rendered, not redirected: the token must never sit in a URL, a session or a later page.
    return _render_tokens(new_token=token, new_row=row, form=forms.CreateTokenForm(formdata=None))


@bp.route("/tokens/<int:token_id>/revoke", methods=["POST"])
@roles_required("admin")
def token_revoke(token_id: int):
    """Revoke an ingest token; its source can no longer send events."""
    form = forms.RevokeTokenForm()
    if not form.validate_on_submit():
        _flash_errors(form)
        return _render_tokens(400)
    session = get_session()
    try:
        row = operations.revoke_token(session, token_id, by=current_user.username)
    except operations.AccountError:
        session.rollback()
        abort(404)
    session.commit()
    flash(_("Đã thu hồi mã truy cập của nguồn %(source)s.", source=row.source), "success")
    return redirect(url_for("admin.tokens"))


@bp.route("/agents")
@roles_required("admin")
def agents():
    """List agents with their last contact and event-number gaps."""
    now = utcnow()
    rows = get_session().scalars(select(Agent).order_by(Agent.source, Agent.agent_id)).all()
    cutoff = now - timedelta(minutes=_settings().agent_silence_minutes)
    silent = {a.id for a in rows if a.last_contact_at is None or a.last_contact_at < cutoff}
    from service.web.labels import ACCESS_MODE_NAMES

    return render_template("admin/agents.html", agents=rows, silent=silent, now=now,
                           silence_minutes=_settings().agent_silence_minutes,
                           access_modes=ACCESS_MODE_NAMES)


@bp.route("/notifications")
@roles_required("admin")
def notifications():
    """Show which notification channels are configured and who gets notified (read-only)."""
    recipients = [u for u in get_session().scalars(
        select(User).where(User.is_disabled.is_(False)).order_by(User.username))
        if u.has_role("leader", "police")]
    return render_template("admin/notifications.html", status=notification_status(_settings()),
                           recipients=recipients)


@bp.route("/policy")
@roles_required("admin")
def policy():
    """Show the policy in force and its last rule-test results (read-only)."""
    state = current_app.extensions.get(POLICY_STATE_KEY)
    return render_template("admin/policy.html", status=policy_status(state))
