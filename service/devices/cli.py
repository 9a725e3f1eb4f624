"""`canhgac device add|list|revoke`: the register of official USB sticks from the command line."""

from __future__ import annotations

import click

from service.auth.models import UNITS
from service.core.cliutil import cli_actor, with_app
from service.core.db import get_session
from service.devices import operations


@click.group("device")
def device_cli() -> None:
    """Register official removable devices (USB sticks) / thiết bị lưu trữ công vụ."""


@device_cli.command("add")
@click.option("--label", required=True, help="Tên thiết bị, ví dụ 'USB Công an 01' / label")
@click.option("--unit", required=True, type=click.Choice(sorted(UNITS)), help="Đơn vị quản lý / owner unit")
@click.option("--serial", required=True, help="Số sê-ri của thiết bị / the device's serial")
@click.option("--fs-uuid", default=None, help="UUID phân vùng hoặc số sê-ri ổ đĩa (1A2B-3C4D) / optional")
@click.option("--vendor", default=None, help="Hãng sản xuất / optional")
@click.option("--model", default=None, help="Kiểu thiết bị / optional")
@with_app
def device_add(app, label, unit, serial, fs_uuid, vendor, model) -> None:
    """Register an official device; copies of personal data to it then only ask for a purpose."""
    session = get_session()
    try:
        device = operations.register_device(session, label=label, owner_unit=unit, serial=serial,
                                            fs_uuid=fs_uuid, vendor=vendor, model=model,
                                            by=cli_actor())
    except operations.DeviceError as exc:
        raise click.ClickException(str(exc)) from None
    session.commit()
    click.echo(f"Đã đăng ký thiết bị số {device.id}: {device.label} (sê-ri {device.serial})")


@device_cli.command("list")
@with_app
def device_list(app) -> None:
    """List registered devices: id, label, unit, serial, fs UUID, state."""
    for device in operations.list_devices(get_session()):
        state = f"revoked {device.revoked_at:%Y-%m-%d}" if device.is_revoked else "active"
        click.echo("\t".join([str(device.id), device.label, device.owner_unit, device.serial,
                              device.fs_uuid or "-", state]))


@device_cli.command("revoke")
@click.argument("device_id", type=int)
@with_app
def device_revoke(app, device_id) -> None:
    """Take a device off the register (lost, broken, handed over)."""
    session = get_session()
    try:
        device = operations.revoke_device(session, device_id, by=cli_actor())
    except operations.DeviceError as exc:
        raise click.ClickException(str(exc)) from None
    session.commit()
    click.echo(f"Đã thu hồi đăng ký thiết bị số {device.id} ({device.label})")
