"""Register and revoke official removable devices; tell events' devices apart. Operations flush,
the caller commits; each change writes its audit entry and is announced to leaders and police.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from canhgac_common.events import Device, Event
from service.audit.log import record
from service.auth.models import UNITS
from service.core.db import utcnow
from service.devices.models import RegisteredDevice

MAX_TEXT = 128
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class DeviceError(ValueError):
    """A device operation was refused; the message says why (Vietnamese)."""


def normalize_identity(text: str) -> str:
    """Return the form serials and filesystem UUIDs are compared in (NFKC, trimmed, case-folded).

    NFKC folds full-width digits and letters a keyboard or copy-paste may bring in; case does
    not matter (Windows shows ``1A2B-3C4D``, Linux ``1a2b-3c4d``).
    """
    return unicodedata.normalize("NFKC", text).strip().casefold()


def _text(value: str | None, what: str, *, required: bool) -> str | None:
    value = (value or "").strip()
    if not value:
        if required:
            raise DeviceError(f"Thiếu {what}")
        return None
    if len(value) > MAX_TEXT or _CONTROL.search(value):
        raise DeviceError(f"{what.capitalize()} phải có tối đa {MAX_TEXT} ký tự, không có ký tự điều khiển")
    return value


def _announce(session: Session, headline: str, details: list[str], *, by: str) -> None:
    # Resolved at call time: the notify package imports auth, which the app loads first.
    from service.notify.security import notify_security_change

    notify_security_change(session, headline=headline, details=details, by=by)


def _describe(device: RegisteredDevice) -> str:
    return f"{device.label} (số sê-ri {device.serial}, đơn vị {UNITS.get(device.owner_unit, device.owner_unit)})"


def register_device(session: Session, *, label: str, owner_unit: str, serial: str,
                    fs_uuid: str | None = None, vendor: str | None = None,
                    model: str | None = None, by: str) -> RegisteredDevice:
    """Put an official device on the register, write the audit entry and announce it."""
    label = _text(label, "tên thiết bị", required=True)
    serial = _text(serial, "số sê-ri", required=True)
    fs_uuid = _text(fs_uuid, "mã định danh phân vùng (UUID)", required=False)
    vendor = _text(vendor, "hãng sản xuất", required=False)
    model = _text(model, "kiểu thiết bị", required=False)
    if owner_unit not in UNITS:
        raise DeviceError(f"Đơn vị không tồn tại: {owner_unit}")
    serial_key = normalize_identity(serial)
    existing = session.scalar(select(RegisteredDevice).where(
        RegisteredDevice.serial_key == serial_key, RegisteredDevice.revoked_at.is_(None)))
    if existing is not None:
        raise DeviceError(f"Số sê-ri này đã được đăng ký cho thiết bị số {existing.id} ({existing.label})")
    device = RegisteredDevice(
        label=label, owner_unit=owner_unit, serial=serial, serial_key=serial_key,
        fs_uuid=fs_uuid, fs_uuid_key=normalize_identity(fs_uuid) if fs_uuid else None,
        vendor=vendor, model=model, registered_by=by, registered_at=utcnow(),
    )
    session.add(device)
    session.flush()
    record(session, "device.registered", {
        "by": by, "device_id": device.id, "label": label, "owner_unit": owner_unit,
        "serial": serial, "fs_uuid": fs_uuid, "vendor": vendor, "model": model,
    }, actor=by)
    # A registered stick turns an incident into an alert: whoever watches must know of it.
    _announce(session, f"Đã đăng ký thiết bị lưu trữ công vụ số {device.id}: {_describe(device)}", [
        "Sao chép dữ liệu cá nhân ra thiết bị này từ nay chỉ tạo cảnh báo yêu cầu nêu mục đích, "
        "không tạo sự cố như thiết bị lạ.",
    ], by=by)
    return device


def revoke_device(session: Session, device_id: int, *, by: str) -> RegisteredDevice:
    """Take a device off the register (lost, broken, given away), audit and announce it."""
    device = session.get(RegisteredDevice, device_id)
    if device is None:
        raise DeviceError(f"Không có thiết bị đã đăng ký số {device_id}")
    if device.revoked_at is None:
        device.revoked_at = utcnow()
        device.revoked_by = by
        session.flush()
        record(session, "device.revoked", {
            "by": by, "device_id": device.id, "label": device.label, "serial": device.serial,
        }, actor=by)
        _announce(session, f"Đã thu hồi đăng ký thiết bị lưu trữ số {device.id}: {_describe(device)}", [
            "Sao chép dữ liệu cá nhân ra thiết bị này từ nay được coi như ra thiết bị chưa đăng ký "
            "(tạo sự cố).",
        ], by=by)
    return device


def list_devices(session: Session) -> list[RegisteredDevice]:
    """Return every registered device, those in use first, then by label."""
    return list(session.scalars(select(RegisteredDevice).order_by(
        RegisteredDevice.revoked_at.is_not(None), RegisteredDevice.label, RegisteredDevice.id)))


# ---------------------------------------------------------------- matching events' devices


@dataclass(frozen=True)
class DeviceRegister:
    """The devices in use, by normalised serial and filesystem UUID, for matching events.

    A device reported with a serial matches a registration with the same serial, unless both
    name a filesystem UUID and they differ (a registration may pin the volume too). Without a
    serial (Windows could not read it), the filesystem UUID alone must match one registered
    with it. Nothing reported: not registered.
    """

    serials: dict[str, tuple[str | None, ...]]
    fs_uuids: frozenset[str]

    @classmethod
    def build(cls, rows: Sequence[RegisteredDevice]) -> DeviceRegister:
        """Return the register of the given rows that are not revoked."""
        serials: dict[str, list[str | None]] = {}
        for row in rows:
            if row.revoked_at is None:
                serials.setdefault(row.serial_key, []).append(row.fs_uuid_key)
        return cls({k: tuple(v) for k, v in serials.items()},
                   frozenset(r.fs_uuid_key for r in rows if r.revoked_at is None and r.fs_uuid_key))

    def is_registered(self, device: Device | None) -> bool:
        """Tell whether an event's device is an official device in use."""
        if device is None:
            return False
        fs_uuid = normalize_identity(device.fs_uuid) if device.fs_uuid else ""
        if device.serial and normalize_identity(device.serial):
            pinned = self.serials.get(normalize_identity(device.serial))
            if pinned is None:
                return False
            return not fs_uuid or any(p is None or p == fs_uuid for p in pinned)
        return bool(fs_uuid) and fs_uuid in self.fs_uuids


def load_register(session: Session) -> DeviceRegister:
    """Return the register of devices in use, read from the database."""
    rows = session.scalars(select(RegisteredDevice).where(RegisteredDevice.revoked_at.is_(None)))
    return DeviceRegister.build(list(rows))


def mark_registered(session: Session, events: list[Event]) -> list[Event]:
    """Return the events with ``destination.device.is_registered`` set from the register.

    Whatever a client sent in that field is replaced. The register is read once per batch and
    only when an event names a device, so batches without one cost nothing.
    """
    if not any(e.destination is not None and e.destination.device is not None for e in events):
        return events
    register = load_register(session)
    marked = list(events)
    for index, event in enumerate(events):
        dest = event.destination
        device = dest.device if dest is not None else None
        if device is None:
            continue
        flag = register.is_registered(device)
        if device.is_registered is not flag:
            marked[index] = event.model_copy(update={"destination": dest.model_copy(update={
                "device": device.model_copy(update={"is_registered": flag})})})
    return marked
