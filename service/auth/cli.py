"""`canhgac user …` and `canhgac token …` commands."""

from __future__ import annotations

import os

import click

from service.auth import operations
from service.auth.models import UNITS, Role, User
from service.core.cliutil import with_app
from service.core.db import get_session


def _password_from_env_or_prompt(env_name: str) -> str:
    password = os.environ.get(env_name)
    if password:
        return password
    return click.prompt("Mật khẩu / password", hide_input=True, confirmation_prompt=True)


@click.group("user")
def user_cli() -> None:
    """Manage user accounts."""


@user_cli.command("add")
@click.argument("username")
@click.option("--role", "roles", multiple=True, required=True,
              type=click.Choice([r.value for r in Role]))
@click.option("--email", required=True)
@click.option("--unit", type=click.Choice(sorted(UNITS)), default=None)
@click.option("--phone", default=None, help="Số di động Việt Nam nhận SMS, ví dụ 0912345678")
@click.option("--full-name", default="")
@with_app
def user_add(app, username, roles, email, unit, phone, full_name) -> None:
    """Add a user (password from a prompt or CANHGAC_USER_PASSWORD)."""
    password = _password_from_env_or_prompt("CANHGAC_USER_PASSWORD")
    session = get_session()
    try:
        user = operations.create_user(
            session, username=username, password=password, roles=list(roles), email=email,
            unit=unit, phone=phone, full_name=full_name,
            min_password_length=app.config["SETTINGS"].password_min_length, by="cli",
        )
    except operations.AccountError as exc:
        raise click.ClickException(str(exc)) from None
    session.commit()
    click.echo(f"Đã tạo người dùng {user.username} ({', '.join(user.roles)})")


@user_cli.command("passwd")
@click.argument("username")
@with_app
def user_passwd(app, username) -> None:
    """Set a user's password (from a prompt or CANHGAC_USER_PASSWORD)."""
    session = get_session()
    try:
        user = operations.get_user(session, username)
        operations.change_password(
            session, user, _password_from_env_or_prompt("CANHGAC_USER_PASSWORD"),
            min_password_length=app.config["SETTINGS"].password_min_length, by="cli",
        )
    except operations.AccountError as exc:
        raise click.ClickException(str(exc)) from None
    session.commit()
    click.echo(f"Đã đổi mật khẩu cho {user.username}")


def _apply_to_user(username: str, operation, done: str) -> None:
    """Run an account operation on a user by name, commit, and say what was done."""
    session = get_session()
    try:
        user = operations.get_user(session, username)
    except operations.AccountError as exc:
        raise click.ClickException(str(exc)) from None
    operation(session, user, by="cli")
    session.commit()
    click.echo(f"{done} {user.username}")


@user_cli.command("disable")
@click.argument("username")
@with_app
def user_disable(app, username) -> None:
    """Disable a user account (accounts are never deleted)."""
    _apply_to_user(username, operations.disable_user, "Đã vô hiệu hóa")


@user_cli.command("enable")
@click.argument("username")
@with_app
def user_enable(app, username) -> None:
    """Enable a disabled user account again."""
    _apply_to_user(username, operations.enable_user, "Đã kích hoạt lại")


@user_cli.command("phone")
@click.argument("username")
@click.argument("phone", default="")
@with_app
def user_phone(app, username, phone) -> None:
    """Set a user's Vietnamese mobile number for SMS (empty clears it)."""
    session = get_session()
    try:
        user = operations.get_user(session, username)
        operations.set_phone(session, user, phone or None, by="cli")
    except operations.AccountError as exc:
        raise click.ClickException(str(exc)) from None
    session.commit()
    click.echo(f"Đã cập nhật số điện thoại của {user.username}: {user.phone or 'không có'}")


@user_cli.command("substitute")
@click.argument("username")
@click.option("--by", "substitute_name", required=True, help="Người thay / the substitute")
@click.option("--from", "starts_on", required=True, type=click.DateTime(["%Y-%m-%d", "%d/%m/%Y"]),
              help="Ngày bắt đầu nghỉ (YYYY-MM-DD hoặc dd/mm/yyyy)")
@click.option("--to", "ends_on", required=True, type=click.DateTime(["%Y-%m-%d", "%d/%m/%Y"]),
              help="Ngày kết thúc nghỉ, tính cả ngày đó")
@with_app
def user_substitute(app, username, substitute_name, starts_on, ends_on) -> None:
    """Name who stands in for a leader or police officer on leave (notices go to both)."""
    from service.auth import substitutes

    session = get_session()
    try:
        user = operations.get_user(session, username)
        substitute = operations.get_user(session, substitute_name)
        row = substitutes.name_substitute(session, user, substitute, starts_on=starts_on.date(),
                                          ends_on=ends_on.date(), by=None)
    except (operations.AccountError, substitutes.SubstitutionError) as exc:
        raise click.ClickException(str(exc)) from None
    session.commit()
    click.echo(f"Số {row.id}: {substitute.username} thay {user.username} từ "
               f"{row.starts_on:%d/%m/%Y} đến {row.ends_on:%d/%m/%Y}")


@user_cli.command("substitute-cancel")
@click.argument("substitution_id", type=int)
@with_app
def user_substitute_cancel(app, substitution_id) -> None:
    """Cancel a substitution by its number."""
    from service.auth import substitutes
    from service.auth.models import Substitution

    session = get_session()
    row = session.get(Substitution, substitution_id)
    if row is None:
        raise click.ClickException(f"Không có việc chỉ định người thay số {substitution_id}")
    try:
        substitutes.cancel_substitution(session, row, by=None)
    except substitutes.SubstitutionError as exc:
        raise click.ClickException(str(exc)) from None
    session.commit()
    click.echo(f"Đã hủy việc chỉ định số {row.id}")


@user_cli.command("list")
@with_app
def user_list(app) -> None:
    """List user accounts."""
    from sqlalchemy import select

    for user in get_session().scalars(select(User).order_by(User.username)):
        state = "disabled" if user.is_disabled else "active"
        click.echo(f"{user.username}\t{','.join(user.roles)}\t{user.unit or '-'}\t{state}")


@click.group("token")
def token_cli() -> None:
    """Manage ingest tokens for agents and business software."""


@token_cli.command("create")
@click.option("--source", required=True, help="Tên nguồn / source name")
@click.option("--scope", type=click.Choice(["ingest", "monitor"]), default="ingest",
              show_default=True,
              help="ingest: gửi sự kiện / send events; monitor: chỉ đọc nhật ký (tlog) / only "
                   "read the trail's checkpoint, tiles and entries (witnesses, the province)")
@with_app
def token_create(app, source, scope) -> None:
    """Create a token; the token is printed alone on the last line."""
    session = get_session()
    try:
        row, token = operations.create_token(session, source, by="cli", scope=scope)
    except operations.AccountError as exc:
        raise click.ClickException(str(exc)) from None
    session.commit()
    click.echo(f"Mã truy cập số {row.id} cho nguồn {row.source} (chỉ hiển thị một lần):")
    click.echo(token)


@token_cli.command("revoke")
@click.argument("token_id", type=int)
@with_app
def token_revoke(app, token_id) -> None:
    """Revoke an ingest token by its number."""
    session = get_session()
    try:
        row = operations.revoke_token(session, token_id, by="cli")
    except operations.AccountError as exc:
        raise click.ClickException(str(exc)) from None
    session.commit()
    click.echo(f"Đã thu hồi mã truy cập số {row.id} ({row.source})")
