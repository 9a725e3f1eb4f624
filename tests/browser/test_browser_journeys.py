"""User journeys in a real browser, in Vietnamese and English, at 1280 px and at 390 px."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
import urllib.error
import urllib.request
import zipfile
from datetime import timedelta

import pytest
from sqlalchemy import select

from tests.browser.conftest import PASSWORD

pytestmark = pytest.mark.browser


def _seconds(clock: str) -> int:
    days = re.match(r"(\d+) \D+ ", clock)
    h, m, s = (int(x) for x in clock.rsplit(" ", 1)[-1].split(":"))
    return (int(days.group(1)) if days else 0) * 86400 + h * 3600 + m * 60 + s


def _tag(journey) -> str:
    return f"{journey.lang}{journey.width}"


def _needs(server, endpoint: str) -> None:
    if endpoint not in server.app.view_functions:
        pytest.skip(f"endpoint {endpoint} is not registered (service/incidents/views.py not "
                    "wired into create_app yet)")


def _user(server, username: str):
    from service.auth.models import User

    s = server.session()
    user = s.scalar(select(User).where(User.username == username))
    s.close()
    return user


def _report(server, title: str, reporter: str = "can-bo"):
    """Open an incident the way the report form does (notifications are queued too)."""
    from service.auth.models import User
    from service.incidents import workflow

    s = server.session()
    user = s.scalar(select(User).where(User.username == reporter))
    incident = workflow.report_incident(s, server.app.config["SETTINGS"], origin="report",
                                        title=title, summary="Nghi ngờ lộ lọt dữ liệu", reporter=user)
    s.commit()
    incident_id = incident.id
    s.close()
    return incident_id


def test_admin_creates_an_ingest_token(journey):
    page = journey.page
    journey.login("quan-tri")
    journey.shot("dashboard")
    journey.nav("Mã truy cập")
    journey.shot("tokens")
    source = f"may-tram-{_tag(journey)}"
    page.get_by_label(journey.t("Tên nguồn")).fill(source)
    page.get_by_role("button", name=journey.t("Tạo mã truy cập")).click()
    page.wait_for_load_state()
    token = page.locator("#new-token").inner_text().strip()
    assert token.startswith("cg_")
    assert page.get_by_role("heading", name=journey.t(
        "Mã truy cập mới cho nguồn %(source)s (chỉ hiện một lần)", source=source)).is_visible()
    journey.shot("token-shown-once")
    # The token works against the real ingest API...
    request = urllib.request.Request(  # noqa: S310 - our own server on 127.0.0.1
        journey.url("/api/v1/agents/heartbeat"), method="POST",
        data=json.dumps({"agent_id": f"agent-{_tag(journey)}", "host": "may-01"}).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 - local server
        assert answer.status == 200
    # ...and is never shown again.
    journey.nav("Mã truy cập")
    assert token not in page.content()
    revoke = page.get_by_role("button", name=journey.t("Thu hồi mã truy cập của %(source)s",
                                                       source=source))
    journey.shot("tokens-after")
    journey.nav("Thiết bị giám sát")
    assert page.get_by_text(f"agent-{_tag(journey)}").is_visible()
    journey.shot("agents")
    journey.nav("Mã truy cập")
    revoke.click()
    page.wait_for_load_state()
    assert page.get_by_text(journey.t("Đã thu hồi mã truy cập của nguồn %(source)s.",
                                      source=source)).is_visible()
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)  # noqa: S310 - local server
    assert refused.value.code == 401
    refused.value.close()
    journey.shot("token-revoked")
    journey.check()


def test_admin_creates_a_user(journey):
    page = journey.page
    username = f"nguyen.van.{_tag(journey)}"
    journey.login("quan-tri")
    journey.nav("Người dùng")
    journey.shot("users")
    page.get_by_role("link", name=journey.t("Tạo tài khoản")).click()
    page.wait_for_load_state()
    page.get_by_label(journey.t("Tên đăng nhập")).fill(username)
    page.get_by_label(journey.t("Họ và tên")).fill("Nguyễn Văn An")
    page.get_by_label(journey.t("Email")).fill(f"{username}@nhanly.example")
    page.get_by_label(journey.t("Đơn vị")).select_option("vh_xh")
    page.get_by_label(journey.t("Cán bộ, công chức")).check()
    page.locator("#password").fill("mat-khau-moi-dai-1")
    page.locator("#password_confirm").fill("mat-khau-moi-dai-1")
    journey.shot("user-form")
    page.get_by_role("button", name=journey.t("Tạo tài khoản")).click()
    page.wait_for_load_state()
    assert page.get_by_text(journey.t("Đã tạo tài khoản %(name)s.", name=username)).is_visible()
    journey.shot("user-created")
    journey.nav("Thông báo")
    journey.shot("notifications")
    journey.nav("Chính sách")
    journey.shot("policy")
    # The new official logs in and lands on the start page.
    page.get_by_role("button", name=journey.t("Đăng xuất")).click()
    page.wait_for_load_state()
    journey.login(username, "mat-khau-moi-dai-1")
    assert page.get_by_role("heading", name=journey.t("Xin chào, %(name)s", name="Nguyễn Văn An"))
    journey.shot("official-home")
    assert _user(journey.server, username).roles == ["official"]
    journey.check()


def test_leader_sees_the_dashboard(journey):
    from service.core.db import utcnow
    from service.incidents.models import Incident

    page = journey.page
    title = f"Sao chép danh sách hộ nghèo ra USB {_tag(journey)}"
    now = utcnow()
    s = journey.server.session()
    s.add(Incident(title=title, origin="report", severity="critical", unit="vh_xh",
                   created_at=now - timedelta(minutes=20), detected_at=now - timedelta(minutes=21),
                   notice_due_at=now + timedelta(hours=50)))
    s.commit()
    s.close()
    journey.login("lanh-dao")
    assert page.url.endswith("/dashboard")
    assert page.get_by_role("heading", name=journey.t("Tổng quan"), exact=True).is_visible()
    unack = page.locator("section", has=page.get_by_role(
        "heading", name=re.compile(re.escape(journey.t("Sự cố chưa được xác nhận")))))
    clock = unack.locator("tr", has_text=title).locator("time.clock")
    first = clock.inner_text()
    page.wait_for_timeout(2200)
    second = clock.inner_text()
    assert _seconds(second) > _seconds(first) >= 20 * 60  # the clock runs (static/app.js)
    assert "overdue" in clock.get_attribute("class")  # past the 15-minute acknowledgement SLA
    deadline = page.locator("section", has=page.get_by_role(
        "heading", name=re.compile(re.escape(journey.t("Hạn thông báo %(h)s giờ cho cơ quan chuyên trách", h=72)))))
    assert journey.t("%(d)s ngày", d=2) in deadline.locator("tr", has_text=title).inner_text()
    journey.shot("dashboard")
    link = unack.locator("tr", has_text=title).get_by_role("link")
    if link.count():
        link.first.click()
        page.wait_for_load_state()
        journey.shot("incident")
    journey.check()


def test_police_search_the_trail_and_download_a_proof(journey, tmp_path):
    from service.audit import merkle
    from service.audit.checkpoint import open_checkpoint

    page = journey.page
    journey.login("cong-an")
    key = page.locator("pre.key").inner_text().strip()
    assert key == journey.server.verifier_key()
    journey.shot("dashboard")
    journey.nav("Nhật ký kiểm toán")
    journey.shot("trail")
    page.get_by_text(journey.t("Bộ lọc"), exact=True).first.click()  # filters fold behind one button
    page.get_by_label(journey.t("Người thực hiện")).fill("cong-an")
    page.get_by_role("button", name=journey.t("Tìm"), exact=True).click()
    page.wait_for_load_state()
    journey.shot("trail-search")
    page.locator("main table tbody tr a").first.click()
    page.wait_for_load_state()
    assert "/audit/entries/" in page.url
    journey.shot("entry")
    with page.expect_download() as download:
        page.get_by_role("link", name=journey.t("Tải bằng chứng bao hàm (JSON)")).click()
    path = tmp_path / "proof.json"
    download.value.save_as(path)
    proof = json.loads(path.read_text(encoding="utf-8"))
    leaf = merkle.leaf_hash(proof["entry"]["body"].encode())
    assert base64.b64decode(proof["entry"]["leaf_hash"]) == leaf
    assert "cong-an" in proof["entry"]["body"]
    origin = journey.server.app.config["SETTINGS"].audit_origin
    checkpoint = open_checkpoint(proof["checkpoint"], origin, [key])
    assert checkpoint.size == proof["tree_size"]
    merkle.verify_inclusion(leaf, proof["entry"]["seq"], checkpoint.size,
                            [base64.b64decode(h) for h in proof["inclusion_proof"]], checkpoint.root)
    journey.check()


# ---------------------------------------------------------------- incident journeys


def test_official_reports_a_leak(journey):
    _needs(journey.server, "incidents.report")
    page = journey.page
    journey.login("can-bo")
    journey.shot("home")
    page.get_by_role("link", name=journey.t("Báo cáo nghi ngờ lộ lọt dữ liệu")).click()
    page.wait_for_load_state()
    journey.shot("report-form")
    what = f"Thấy tệp danh sách hộ nghèo bị chép ra USB ({_tag(journey)})"
    page.locator("textarea[name=what_happened]").fill(what)
    page.locator("main form button[type=submit]").last.click()
    page.wait_for_load_state()
    assert re.search(r"/incidents/\d+$", page.url), page.url
    incident_id = int(page.url.rsplit("/", 1)[1])
    assert page.get_by_text(journey.t(
        "Đã gửi báo cáo sự cố #%(id)s. Lãnh đạo UBND xã và Công an xã đã được thông báo.",
        id=incident_id)).is_visible()
    journey.shot("reported")
    journey.nav("Báo cáo của tôi")
    assert page.get_by_text(f"{incident_id}").first.is_visible()
    journey.shot("my-reports")
    journey.check()


def test_leader_acknowledges_from_the_notification_link(journey):
    _needs(journey.server, "incidents.acknowledge")
    from service.incidents.models import Incident
    from service.notify.models import OutboxMessage

    page = journey.page
    incident_id = _report(journey.server, f"Tài khoản bị đăng nhập lạ {_tag(journey)}")
    s = journey.server.session()
    link = s.scalar(select(OutboxMessage.link).where(
        OutboxMessage.incident_id == incident_id, OutboxMessage.recipient_username == "lanh-dao",
        OutboxMessage.link.is_not(None)))
    s.close()
    assert link and link.startswith(journey.server.base_url), link
    page.goto(link)  # the link from the mail: not logged in yet, so the login page first
    assert "/login" in page.url
    journey.choose_language()
    page.get_by_label(journey.t("Tên đăng nhập")).fill("lanh-dao")
    page.get_by_label(journey.t("Mật khẩu")).fill(PASSWORD)
    journey.shot("login-from-link")
    page.get_by_role("button", name=journey.t("Đăng nhập"), exact=True).click()
    page.wait_for_load_state()
    assert f"/incidents/{incident_id}/acknowledge" in page.url
    journey.shot("acknowledge")
    page.locator("main form button[type=submit]").first.click()
    page.wait_for_load_state()
    journey.shot("acknowledged")
    s = journey.server.session()
    state = s.get(Incident, incident_id).state
    s.close()
    assert state == "acknowledged"
    journey.check()


def test_police_export_an_incident_bundle(journey, tmp_path):
    _needs(journey.server, "incidents.detail")
    page = journey.page
    incident_id = _report(journey.server, f"Chia sẻ hồ sơ hộ tịch qua Zalo {_tag(journey)}")
    journey.login("cong-an")
    key = page.locator("pre.key").inner_text().strip()  # as copied onto paper
    journey.nav("Sự cố")
    journey.shot("incidents")
    page.locator(f"a[href$='/incidents/{incident_id}']").first.click()
    page.wait_for_load_state()
    journey.shot("incident")
    journey.nav("Nhật ký kiểm toán")
    page.get_by_text(journey.t("Bộ lọc"), exact=True).first.click()
    page.get_by_label(journey.t("Sự cố số")).fill(str(incident_id))
    page.get_by_role("button", name=journey.t("Tìm"), exact=True).click()
    page.wait_for_load_state()
    journey.shot("trail-incident")
    with page.expect_download() as download:
        page.get_by_role("button", name=journey.t("Xuất gói bằng chứng")).click()
    bundle = tmp_path / "bang-chung.zip"
    download.value.save_as(bundle)
    with zipfile.ZipFile(bundle) as archive:
        archive.extract("verify_bundle.py", tmp_path)
        lines = archive.read("entries.jsonl").decode().splitlines()
    bodies = [json.loads(line)["body"] for line in lines]
    assert bodies and all(re.search(rf'"incident_id":\s*{incident_id}\b', b) for b in bodies)
    result = subprocess.run([sys.executable, str(tmp_path / "verify_bundle.py"), str(bundle),
                             "--key", key], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    journey.check()
