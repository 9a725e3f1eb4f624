"""The register of official USB sticks: CLI, admin page (CSRF), audit entries, announcements,
and what ingest makes of a copy to a registered, an unknown or an unidentified device."""

from __future__ import annotations

import json
import re
import uuid

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select

from canhgac_common.events import Device
from service.audit.models import AuditEntry
from service.core.db import new_session
from service.devices.models import RegisteredDevice
from service.devices.operations import DeviceRegister, normalize_identity
from service.notify.models import OutboxMessage
from service.notify.security import KIND
from tests.conftest import csrf_token_from

WATCHERS = {"chu_tich", "cong_an_1"}
SERIAL = "E0D55EA574F1F3B0A9890F57"


@pytest.fixture
def people(make_user):
    """A leader and a police officer (who must hear of changes), an admin, an official."""
    make_user("chu_tich", "leader")
    make_user("cong_an_1", "police", unit="cong_an")
    make_user("quan_tri", "admin")
    make_user("can_bo", "official", unit="vh_xh")


@pytest.fixture
def device_cli(settings_overrides):
    """Run `canhgac device ...` against the test's data directory and database."""
    from service.cli import main

    env = {"CANHGAC_DATABASE_URL": settings_overrides["database_url"],
           "CANHGAC_SECRET_KEY": "test-secret-key", "CANHGAC_SCHEDULER_ENABLED": "false",
           "CANHGAC_POLICY_RELOAD": "false"}

    def invoke(*args: str):
        sub, *rest = args
        return CliRunner().invoke(
            main, ["device", sub, "--data-dir", str(settings_overrides["data_dir"]), *rest], env=env)

    return invoke


def _rows(app, model, *where, order=None):
    with app.app_context():
        session = new_session(app)
        try:
            rows = list(session.scalars(select(model).where(*where).order_by(order or model.id)))
            session.expunge_all()
            return rows
        finally:
            session.close()


def _audit(app, kind: str) -> list[dict]:
    return [json.loads(e.body)["body"] for e in _rows(app, AuditEntry, AuditEntry.kind == kind,
                                                      order=AuditEntry.seq)]


def _notices(app) -> list[OutboxMessage]:
    return _rows(app, OutboxMessage, OutboxMessage.kind == KIND)


def test_cli_registers_lists_and_revokes_with_audit_and_announcements(app, people, device_cli):
    added = device_cli("add", "--label", "USB Công an 01", "--unit", "cong_an",
                       "--serial", f"  {SERIAL}  ", "--fs-uuid", "1A2B-3C4D", "--vendor", "Kingston")
    assert added.exit_code == 0, added.output
    [device] = _rows(app, RegisteredDevice)
    assert (device.label, device.owner_unit, device.serial, device.fs_uuid) == (
        "USB Công an 01", "cong_an", SERIAL, "1A2B-3C4D")
    assert device.serial_key == SERIAL.casefold() and device.registered_by.startswith("cli")
    [body] = _audit(app, "device.registered")
    assert body["device_id"] == device.id and body["serial"] == SERIAL and body["owner_unit"] == "cong_an"
    notices = _notices(app)
    assert {n.recipient_username for n in notices} == WATCHERS
    assert all(f"thiết bị lưu trữ công vụ số {device.id}" in n.subject for n in notices)

    # the same serial, typed in full-width letters and lower case, is the same device
    again = device_cli("add", "--label", "USB khác", "--unit", "vh_xh",
                       "--serial", "ｅ０ｄ55ea574f1f3b0a9890f57")
    assert again.exit_code != 0 and "đã được đăng ký" in again.output
    assert device_cli("add", "--label", "X", "--unit", "khong_co", "--serial", "1").exit_code != 0

    listed = device_cli("list")
    assert listed.exit_code == 0 and f"{device.id}\tUSB Công an 01\tcong_an\t{SERIAL}\t1A2B-3C4D\tactive" \
        in listed.output

    revoked = device_cli("revoke", str(device.id))
    assert revoked.exit_code == 0, revoked.output
    assert device_cli("revoke", str(device.id)).exit_code == 0  # already revoked: nothing new
    assert len(_audit(app, "device.revoked")) == 1
    assert len(_notices(app)) == 2 * len(WATCHERS)
    assert "revoked" in device_cli("list").output
    assert device_cli("revoke", "999").exit_code != 0
    # once revoked, the serial may be registered again (a stick handed to another unit)
    assert device_cli("add", "--label", "USB VHXH", "--unit", "vh_xh", "--serial", SERIAL).exit_code == 0


@pytest.fixture
def admin(client, make_user, login, people):
    login("quan_tri")
    return "quan_tri"


def _post(client, path: str, **data):
    data["csrf_token"] = csrf_token_from(client, "/admin/devices/")
    return client.post(path, data=data)


def test_admin_page_registers_and_revokes_over_http(app, client, admin):
    page = client.get("/admin/devices/")
    assert page.status_code == 200 and "Thiết bị lưu trữ công vụ" in page.text
    # no CSRF token: refused, nothing registered
    bare = client.post("/admin/devices/new", data={"label": "USB 1", "owner_unit": "cong_an",
                                                   "serial": SERIAL})
    assert bare.status_code == 400 and _rows(app, RegisteredDevice) == []
    missing = _post(client, "/admin/devices/new", label="", owner_unit="cong_an", serial="")
    assert missing.status_code == 400 and "Nhập số sê-ri" in missing.text
    response = _post(client, "/admin/devices/new", label="USB Văn hóa 02", owner_unit="vh_xh",
                     serial=SERIAL, fs_uuid="", vendor="Kingston", model="DataTraveler 3.0")
    assert response.status_code == 302
    [device] = _rows(app, RegisteredDevice)
    assert device.registered_by == "quan_tri" and device.fs_uuid is None
    listing = client.get("/admin/devices/").text
    assert "USB Văn hóa 02" in listing and SERIAL in listing and "Đang dùng" in listing
    duplicate = _post(client, "/admin/devices/new", label="Trùng", owner_unit="vh_xh",
                      serial=SERIAL.lower())
    assert duplicate.status_code == 400 and "đã được đăng ký" in duplicate.text
    assert [b["by"] for b in _audit(app, "device.registered")] == ["quan_tri"]
    assert {n.recipient_username for n in _notices(app)} == WATCHERS

    assert client.post(f"/admin/devices/{device.id}/revoke").status_code == 400  # no CSRF
    assert _post(client, f"/admin/devices/{device.id}/revoke").status_code == 302
    assert "Đã thu hồi lúc" in client.get("/admin/devices/").text
    assert [b["device_id"] for b in _audit(app, "device.revoked")] == [device.id]
    assert _post(client, "/admin/devices/999/revoke").status_code == 404


def test_official_cannot_open_the_register(app, client, people, login):
    login("can_bo")
    assert client.get("/admin/devices/").status_code == 403


# ------------------------------------------------------------------ ingest


@pytest.fixture
def token(runner):
    result = runner.invoke(["token", "create", "--source", "tac-tu-may-tram"])
    assert result.exit_code == 0, result.output
    return result.output.strip().splitlines()[-1]


def _copy(minute: int, device: dict | None, *, path: str = "C:\\DuLieu\\AnSinh\\ho_ngheo.xlsx",
          actor: str = "vhxh.lethid") -> dict:
    destination: dict = {"path": "E:\\ho_ngheo.xlsx", "kind": "removable"}
    if device is not None:
        destination["device"] = device
    return {"id": str(uuid.uuid4()), "occurred_at": f"2026-03-02T09:{minute:02d}:00+07:00",
            "host": "PC-VHXH-01", "actor": actor, "action": "copy",
            "object": {"path": path, "record_count": 40}, "destination": destination,
            "pii": {"cccd": 40}, "unit": "vh_xh", "agent_id": "pc-vhxh-01", "seq": minute}


def _ingest(client, token, events):
    response = client.post("/api/v1/events", data=json.dumps(events), content_type="application/json",
                           headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    return response


def test_copy_to_a_registered_device_is_an_alert_and_to_any_other_an_incident(
        app, client, token, people, device_cli):
    from service.incidents.models import Alert, Incident

    assert device_cli("add", "--label", "USB VHXH 01", "--unit", "vh_xh", "--serial", SERIAL,
                      "--fs-uuid", "1A2B-3C4D").exit_code == 0
    registered = {"vendor": "Kingston", "serial": SERIAL.lower(), "fs_uuid": "1a2b-3c4d"}
    _ingest(client, token, [
        _copy(1, registered, actor="a1"),
        # an unknown stick, one claiming to be registered, one with no identity at all
        _copy(2, {"serial": "4C530001230517116290", "is_registered": True}, actor="a2"),
        _copy(3, None, actor="a3"),
        # the registered serial on a volume other than the one pinned at registration
        _copy(4, {"serial": SERIAL, "fs_uuid": "9C1E-22F0"}, actor="a4"),
    ])
    alerts = {a.actor: a for a in _rows(app, Alert)}
    assert alerts["a1"].rule_id == "sao_chep_thiet_bi_cong_vu" and alerts["a1"].response == "alert"
    assert alerts["a1"].incident_id is None and "đề nghị người sao chép nêu rõ mục đích" in \
        alerts["a1"].explanation
    for actor in ("a2", "a3", "a4"):
        assert alerts[actor].rule_id == "sao_chep_thiet_bi_di_dong", actor
        assert alerts[actor].incident_id is not None
    assert "thiết bị không rõ định danh" in alerts["a3"].explanation
    assert "thiết bị chưa đăng ký" in alerts["a2"].explanation
    incidents = _rows(app, Incident)
    assert {i.rule_id for i in incidents} == {"sao_chep_thiet_bi_di_dong"}
    # the trail keeps the server's verdict on each device, not the sender's claim
    marks = [json.loads(e.body)["body"]["destination"].get("device", {}).get("is_registered")
             for e in _rows(app, AuditEntry, AuditEntry.kind == "event", order=AuditEntry.seq)]
    assert marks == [True, False, None, False]

    # a stated purpose on the registered stick: nothing to ask
    event = _copy(5, registered, actor="a5")
    event["purpose"] = "Rà soát hộ nghèo theo kế hoạch"
    _ingest(client, token, [event])
    assert "a5" not in {a.actor for a in _rows(app, Alert)}

    # revoked: the same stick now opens an incident
    [device] = _rows(app, RegisteredDevice)
    assert device_cli("revoke", str(device.id)).exit_code == 0
    _ingest(client, token, [_copy(6, registered, actor="a6")])
    [late] = [a for a in _rows(app, Alert) if a.actor == "a6"]
    assert late.rule_id == "sao_chep_thiet_bi_di_dong" and late.incident_id is not None


# ------------------------------------------------------------------ matching


def _register(*rows: tuple[str, str | None], revoked: tuple[str, ...] = ()) -> DeviceRegister:
    made = [RegisteredDevice(serial=s, serial_key=normalize_identity(s), fs_uuid=f,
                             fs_uuid_key=normalize_identity(f) if f else None) for s, f in rows]
    for row in made:
        if row.serial in revoked:
            from service.core.db import utcnow

            row.revoked_at = utcnow()
    return DeviceRegister.build(made)


def test_matching_rules():
    register = _register(("AA11", None), ("BB22", "1A2B-3C4D"), ("CC33", None), revoked=("CC33",))
    assert register.is_registered(Device(serial=" aa11 "))
    assert register.is_registered(Device(serial="AA11", fs_uuid="anything"))  # not pinned
    assert register.is_registered(Device(serial="bb22", fs_uuid="1a2b-3c4d"))
    assert register.is_registered(Device(serial="BB22"))  # the volume was not told
    assert not register.is_registered(Device(serial="BB22", fs_uuid="0000-0000"))
    assert register.is_registered(Device(fs_uuid="1A2B-3C4D"))  # Windows without the disk serial
    assert not register.is_registered(Device(fs_uuid="5E8A"))
    assert not register.is_registered(Device(serial="CC33"))  # revoked
    assert not register.is_registered(Device(vendor="Kingston"))
    assert not register.is_registered(None)


@given(serial=st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1, max_size=40)
       .filter(lambda s: normalize_identity(s)),
       pad=st.sampled_from(["", " ", "\t", "  "]))
def test_a_serial_matches_itself_however_it_is_cased_or_padded(serial, pad):
    register = _register((serial, None))
    assert register.is_registered(Device(serial=f"{pad}{serial.upper()}{pad}")) == (
        normalize_identity(serial.upper()) == normalize_identity(serial))
    assert register.is_registered(Device(serial=serial))


def test_device_strings_in_explanations_never_come_from_the_agent(app, client, token, people,
                                                                 device_cli):
    from service.incidents.models import Alert

    planted = "Kingston 020185000003"
    _ingest(client, token, [_copy(7, {"vendor": planted, "model": planted, "serial": "S-1"})])
    [alert] = _rows(app, Alert)
    assert "020185000003" not in alert.explanation
    assert re.search(r"\d{9,}", alert.explanation) is None
