"""Every command finds the data directory as the server does, says which, and a reader creates nothing."""

from __future__ import annotations

import json
import re
import shutil
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner

from service.audit import log
from service.audit.bundle import ascii_slug, bundle_filename
from service.cli import main
from service.config import load_settings
from service.core.cliutil import demo_pointer_path, leave_demo_pointer
from tests.conftest import csrf_token_from

READERS = [
    ["export", "-o", "x.zip", "--incident", "2"],
    ["verify", "--checkpoint", "thu.eml"],
    ["verify"],
    ["checkpoint"],
    ["report", "monthly"],
    ["incident", "list"],
    ["incident", "show", "1"],
    ["backup", "-o", "sao-luu.zip"],
    ["device", "list"],
    ["serve"],
]


def _invoke(args: list[str], env: dict[str, str | None] | None = None):
    # No CANHGAC_* from the developer's shell: only what the test sets.
    base = {"CANHGAC_DATA_DIR": None, "CANHGAC_CONFIG": None, "CANHGAC_DATABASE_URL": None,
            "CANHGAC_SECRET_KEY": None}
    return CliRunner().invoke(main, args, env={**base, **(env or {})})


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


@pytest.mark.parametrize("has_folder", [False, True], ids=["no-folder", "empty-audit_logs"])
def test_reading_commands_stop_naming_where_they_looked_and_create_nothing(tmp_path, monkeypatch,
                                                                           has_folder):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    (work / "thu.eml").write_text("Subject: x\n\nno checkpoint here\n", encoding="utf-8")
    if has_folder:  # as in a fresh checkout: audit_logs/ holds only its README
        (work / "audit_logs").mkdir()
        (work / "audit_logs" / "README.md").write_text("data directory\n", encoding="utf-8")
    before = _files(work)
    for args in READERS:
        result = _invoke(args)
        assert result.exit_code == 1, (args, result.output)
        assert "Traceback" not in result.output
        assert (f"no Canh Gác data in {work / 'audit_logs'} (mặc định / default ./audit_logs; "
                f"đã xem / also looked at {demo_pointer_path()} (không có / absent))") in result.stderr, args
        assert "creates no database or keys" in result.stderr
        assert "canhgac init" in result.stderr
        assert _files(work) == before, args  # no database, no keys/secret_key, no log


def test_an_environment_setting_is_named_when_nothing_is_there(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    leave_demo_pointer(tmp_path)  # a demo's pointer does not outrank the environment
    result = _invoke(["export", "-o", "x.zip"], env={"CANHGAC_DATA_DIR": str(tmp_path / "khac")})
    assert result.exit_code == 1
    assert f"no Canh Gác data in {tmp_path / 'khac'} (CANHGAC_DATA_DIR)" in result.stderr
    assert not (tmp_path / "khac").exists()


def test_a_database_without_schema_is_refused_not_used(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "audit_logs").mkdir()
    (tmp_path / "audit_logs" / "canhgac.db").write_bytes(b"")  # what an old `verify` left
    result = _invoke(["export", "-o", "x.zip", "--incident", "2"])
    assert result.exit_code == 1
    assert "no such table" not in result.output
    assert "has no schema yet: run `canhgac init`" in result.stderr
    assert not (tmp_path / "audit_logs" / "keys").exists()


def test_commands_find_the_demo_from_any_folder_and_say_so(app, session, settings_overrides,
                                                          tmp_path, monkeypatch):
    log.record(session, "user.created", {"by": "admin", "user": "an"}, actor="admin")
    session.commit()
    data_dir = settings_overrides["data_dir"]
    (data_dir / "demo").mkdir()  # what `canhgac demo` makes: the folder is a demo's
    pointer = leave_demo_pointer(data_dir)
    elsewhere = tmp_path / "cong-an"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    env = {"CANHGAC_DATABASE_URL": settings_overrides["database_url"]}
    result = _invoke(["checkpoint"], env=env)
    assert result.exit_code == 0, result.output
    assert result.stderr.startswith(
        f"Thư mục dữ liệu / data directory: {data_dir.resolve()} (thư mục của `canhgac demo`, "
        f"ghi trong / the demo's, noted in {pointer})\n")
    assert result.stdout.startswith(app.config["SETTINGS"].audit_origin + "\n")
    # An installation in ./audit_logs is the server's default and comes before the demo's.
    (elsewhere / "audit_logs").mkdir()
    (elsewhere / "audit_logs" / "keys").mkdir()
    result = _invoke(["checkpoint"], env=env)
    assert "(mặc định / default ./audit_logs)" in result.stderr
    # A pointer to a folder that is gone is named among the places looked at.
    shutil.rmtree(elsewhere / "audit_logs")
    pointer.write_text(str(tmp_path / "da-xoa") + "\n", encoding="utf-8")
    result = _invoke(["checkpoint"], env=env)
    assert result.exit_code == 1
    assert f"{pointer} -> {tmp_path / 'da-xoa'} (không còn / gone)" in result.stderr


def test_the_demo_refuses_a_real_installation(app, runner, data_dir):
    result = runner.invoke(["demo"])
    assert result.exit_code == 1
    assert "holds a real installation, not a demo" in result.output
    assert not (data_dir / "demo").exists() and not (data_dir / "demo-mail").exists()


def test_bundle_names_are_ascii_and_name_commune_incident_and_local_date():
    assert ascii_slug("Xã Đồng Đăng, tỉnh Lạng Sơn") == "xa-dong-dang-tinh-lang-son"
    settings = load_settings({"commune_name": "Xã Nhân Lý"}, environ={})
    late = datetime(2026, 12, 7, 18, 30, tzinfo=UTC)  # already 8 December in Vietnam
    assert bundle_filename(settings, 12, late) == "bang-chung-xa-nhan-ly-su-co-12-2026-12-08.zip"
    assert bundle_filename(settings, None, late) == "bang-chung-xa-nhan-ly-2026-12-08.zip"


def test_export_without_output_names_the_bundle_and_verify_prints_local_time(
        app, session, runner, tmp_path, monkeypatch):
    log.record(session, "incident.commented", {"incident_id": 3, "by": "congan"}, actor="congan",
               incident_id=3)
    session.commit()
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(["export", "--incident", "3"])
    assert result.exit_code == 0, result.output
    (bundle,) = tmp_path.glob("bang-chung-xa-nhan-ly-su-co-3-*.zip")
    assert re.fullmatch(r"bang-chung-xa-nhan-ly-su-co-3-\d{4}-\d\d-\d\d\.zip", bundle.name)
    assert bundle.name.isascii()
    assert "Đã xuất 1 mục" in result.stdout
    with zipfile.ZipFile(bundle) as z:
        exported_at = json.loads(z.read("manifest.json"))["exported_at"]
    local = datetime.fromisoformat(exported_at).astimezone(
        ZoneInfo("Asia/Ho_Chi_Minh")).strftime("%d/%m/%Y %H:%M:%S")
    checked = runner.invoke(["verify", "--bundle", str(bundle)])
    assert checked.exit_code == 0, checked.output
    assert f"xuất lúc {local} (giờ Việt Nam) bởi cli:" in checked.stdout
    assert f"exported {local} (Vietnam time, UTC+7) by cli:" in checked.stdout


def test_the_web_download_is_named_after_commune_incident_and_date(app, session, client,
                                                                   make_user, login):
    make_user("cong_an_1", "police", unit="cong_an")
    log.record(session, "incident.commented", {"incident_id": 5, "by": "x"}, actor="x", incident_id=5)
    session.commit()
    assert login("cong_an_1").status_code == 302
    token = csrf_token_from(client, "/audit/")
    response = client.post("/audit/export.zip", data={"csrf_token": token, "incident_id": "5"})
    assert response.status_code == 200
    disposition = response.headers["Content-Disposition"]
    assert re.fullmatch(r"attachment; filename=bang-chung-xa-nhan-ly-su-co-5-\d{4}-\d\d-\d\d\.zip",
                        disposition), disposition


def test_a_pointer_is_followed_only_to_a_demo_and_only_when_the_user_wrote_it(
        app, session, settings_overrides, tmp_path, monkeypatch):
    log.record(session, "user.created", {"by": "admin", "user": "an"}, actor="admin")
    session.commit()
    data_dir = settings_overrides["data_dir"]  # a real installation: no demo/ folder
    pointer = leave_demo_pointer(data_dir)
    assert pointer.stat().st_mode & 0o777 == 0o600
    elsewhere = tmp_path / "cong-an"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    env = {"CANHGAC_DATABASE_URL": settings_overrides["database_url"]}
    # A stale or planted pointer to a folder that is no demo's sends no command there.
    result = _invoke(["checkpoint"], env=env)
    assert result.exit_code == 1, result.output
    assert f"{pointer} -> {data_dir} (không phải thư mục demo / not a demo's folder" in result.stderr
    assert result.stdout == ""
    # A demo's folder, but the pointer is writable by others (a shared XDG_STATE_HOME): ignored.
    (data_dir / "demo").mkdir()
    pointer.chmod(0o666)
    result = _invoke(["checkpoint"], env=env)
    assert result.exit_code == 1, result.output
    assert "not yours or writable by others" in result.stderr
    # The demo's own pointer, as it leaves it: followed.
    leave_demo_pointer(data_dir)
    result = _invoke(["checkpoint"], env=env)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(app.config["SETTINGS"].audit_origin + "\n")
