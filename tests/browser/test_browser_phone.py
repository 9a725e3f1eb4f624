"""Every role's main pages on a phone (390 × 844) in Debian's Chromium: they fit, and speak words.

For each role the test follows every link of the main menu, plus the pages one reaches from
there (an incident, a trail entry, a month's report), and checks on each:
- the page is not wider than the screen (no sideways scroll);
- no code of the policy (rule, data class, unit ids), the workflow (states, severities, origins)
  or the notifications (entry and message kinds) is visible: people read names.
Then the official's report journey, start to finish, on the phone.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from tests.browser.conftest import Journey

pytestmark = pytest.mark.browser

PHONE = {"width": 390, "height": 844}
# Codes that are words of some language are only codes on a Vietnamese page.
ENGLISH_WORD_CODES = ("high", "critical", "medium", "low", "reported", "acknowledged",
                      "investigating", "contained", "resolved", "closed", "dismissed", "report",
                      "rule", "alert", "open", "created", "escalated")


def _policy_codes(app) -> set[str]:
    state = app.extensions.get("canhgac.policy_state")
    policy = getattr(state, "policy", None)
    assert policy is not None, "the server has no policy loaded"
    return {r.id for r in policy.rules} | set(policy.data_classes) | set(policy.units)


def _vocabulary(app, lang: str) -> re.Pattern:
    from service.web import labels

    codes = _policy_codes(app) | set(labels.ENTRY_KIND_NAMES) | {
        code for code in labels.NOTIFY_KIND_NAMES if "_" in code or "." in code}
    if lang == "vi":
        codes |= set(ENGLISH_WORD_CODES)
    # Longest first, so "incident.reported" is reported whole.
    alternatives = "|".join(re.escape(c) for c in sorted(codes, key=len, reverse=True))
    return re.compile(rf"(?<![\w.-])({alternatives})(?![\w-])")


@pytest.fixture(scope="module")
def scene(server):
    """Rows every role's pages show: a rule incident, an alert, accesses in last month."""
    from service.audit import log
    from service.auth.models import User
    from service.core.db import utcnow
    from service.incidents import workflow
    from service.incidents.models import Alert

    settings = server.app.config["SETTINGS"]
    s = server.session()
    now = utcnow()
    last_month = (now.replace(day=1) - timedelta(days=1)).replace(hour=3, tzinfo=UTC)
    entries = log.append_entries(s, [
        log.PendingEntry("event", {"action": "copy", "i": i},
                         {"actor": "Nguyễn Văn An", "host": "PC-VH_XH-02", "action": "copy",
                          "data_class": "an_sinh", "path": f"D:\\AnSinh\\ho_ngheo_thon_{i}.xlsx",
                          "occurred_at": last_month - timedelta(hours=i)})
        for i in range(3)])
    alert = Alert(rule_id="truy_cap_ngoai_gio", severity="high", response="alert",
                  explanation="Truy cập dữ liệu cá nhân ngoài giờ làm việc: 3 tệp an sinh",
                  entry_seq=entries[0].seq, actor="Nguyễn Văn An", host="PC-VH_XH-02",
                  data_class="an_sinh", group_key=f"phone-{now.timestamp()}", created_at=now)
    s.add(alert)
    official = s.scalar(select(User).where(User.username == "can-bo"))
    reported = workflow.report_incident(
        s, settings, origin="report", severity="high", reporter=official,
        title="Lộ, lọt dữ liệu — Thôn Bản Trại — Người có công, bảo trợ xã hội, hộ nghèo",
        summary="Danh sách hộ nghèo bị gửi vào nhóm Zalo thôn", data_classes=["an_sinh"],
        form_data={"personal_data": "unknown"}, detected_at=now - timedelta(hours=80))
    ruled = workflow.report_incident(
        s, settings, origin="rule", severity="critical", rule_id="sao_chep_thiet_bi_di_dong",
        title="Sao chép dữ liệu cá nhân ra thiết bị lưu trữ di động chưa đăng ký",
        summary="USB lạ", data_classes=["dan_cu"], pii_counts={"cccd": 40},
        group_key=f"phone-rule-{now.timestamp()}")
    s.commit()
    ids = {"reported": reported.id, "ruled": ruled.id, "entry": entries[0].seq,
           "month": f"{last_month.year:04d}-{last_month.month:02d}"}
    s.close()
    return ids


@pytest.fixture(params=["vi", "en"])
def phone(request, browser, server) -> Iterator[Journey]:
    """A fresh phone-sized tab in one language."""
    context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True,
                                  device_scale_factor=1, timezone_id="Asia/Ho_Chi_Minh",
                                  locale="vi-VN" if request.param == "vi" else "en-GB")
    context.set_default_timeout(15_000)
    page = context.new_page()
    try:
        yield Journey(page, server, request.param, PHONE["width"], "phone")
    finally:
        context.close()


def _menu_paths(journey: Journey) -> list[str]:
    menu = journey.page.get_by_role("navigation", name=journey.t("Điều hướng chính"))
    hrefs = [a.get_attribute("href") for a in menu.get_by_role("link").all()]
    return list(dict.fromkeys(h for h in hrefs if h and h.startswith("/")))


# Text a person reads, folded parts included; the stored entry body (the evidence, shown
# verbatim in a <pre class="mono"> on the entry page) is not the interface's wording.
WORDS_JS = """() => {
  const copy = document.body.cloneNode(true);
  copy.querySelectorAll("script, style, pre.mono").forEach((node) => node.remove());
  return copy.textContent;
}"""


def _words(page) -> str:
    return page.evaluate(WORDS_JS)


def _visit(journey: Journey, path: str, codes: re.Pattern | None) -> str:
    journey.page.goto(journey.url(path))
    journey.page.wait_for_load_state()
    journey.shot(re.sub(r"\W+", "-", path).strip("-") or "home")
    # Tables become cards on a phone: none hides columns in a box that scrolls sideways.
    hidden = journey.page.evaluate("""() => [...document.querySelectorAll("main .table-wrap")]
        .filter((box) => box.scrollWidth > box.clientWidth + 1).length""")
    if hidden:
        journey.problems.append(f"{path}: {hidden} table(s) scroll sideways")
    text = _words(journey.page)
    if codes is not None:
        found = sorted({m.group(1) for m in codes.finditer(text)})
        if found:
            journey.problems.append(f"{path}: codes visible: {found}")
    return text


@pytest.mark.parametrize("username, extra", [
    ("can-bo", ["/incidents/{reported}"]),
    ("lanh-dao", ["/incidents/{reported}", "/incidents/{ruled}", "/reports/{month}"]),
    ("cong-an", ["/incidents/{reported}", "/incidents/{ruled}", "/audit/entries/{entry}",
                 "/reports/{month}", "/audit/?actor=nguyen"]),
    ("quan-tri", []),
])
def test_every_main_page_fits_a_phone_and_shows_no_codes(phone, scene, username, extra):
    phone.name = f"phone-{username}"
    phone.login(username)
    # Admin pages show the policy as written (its ids are the admin's vocabulary); the
    # others are read by officials, leaders and police.
    codes = None if username == "quan-tri" else _vocabulary(phone.server.app, phone.lang)
    paths = _menu_paths(phone)
    assert paths, "the main menu has no links"
    for path in paths + [p.format(**scene) for p in extra]:
        _visit(phone, path, codes)
    if username == "cong-an":
        trail = _visit(phone, "/audit/?actor=nguyen", codes)
        assert "Nguyễn Văn An" in trail  # "nguyen" finds "Nguyễn"
    phone.check()


def test_phone_filters_fold_behind_one_button(phone, scene):
    phone.login("cong-an")
    page = phone.page
    page.goto(phone.url("/audit/"))
    actor = page.get_by_label(phone.t("Người thực hiện"))
    assert not actor.is_visible()  # folded: the first result is on the first screen
    page.get_by_text(phone.t("Bộ lọc"), exact=True).first.click()
    assert actor.is_visible()
    data_class = page.get_by_label(phone.t("Loại dữ liệu"))
    data_class.select_option(label="Người có công, bảo trợ xã hội, hộ nghèo, hộ cận nghèo")
    page.get_by_role("button", name=phone.t("Tìm"), exact=True).click()
    page.wait_for_load_state()
    assert "data_class=an_sinh" in page.url
    assert page.locator("main table tbody tr").count() == 3
    # The filters stay folded after a search: the first result is on the first screen.
    assert page.locator("main table tbody tr").first.bounding_box()["y"] < PHONE["height"]
    phone.shot("trail-filtered")
    phone.check()


def test_official_reports_on_a_phone_and_reads_words(phone, scene):
    page = phone.page
    codes = _vocabulary(phone.server.app, phone.lang)
    phone.login("can-bo")
    page.goto(phone.url("/incidents/report"))
    phone.shot("report-form")
    page.locator("textarea[name=what_happened]").fill("Danh sách người có công bị chép ra USB")
    page.locator("input[name=data_classes][value=an_sinh]").check()
    # A typo in the year: the form asks to confirm instead of filing a 27-year-old incident.
    page.locator("input[name=noticed_at]").fill("1999-01-01T08:00")
    page.locator("main form button[type=submit]").last.click()
    page.wait_for_load_state()
    assert page.url.endswith("/incidents/report")
    confirm = page.locator("input[name=confirm_old_detection]")
    assert confirm.is_visible()
    # The refused form answers 400 on purpose; Chromium logs that as a failed load.
    phone.problems = [p for p in phone.problems if "status of 400" not in p]
    phone.shot("report-confirm")
    page.locator("input[name=noticed_at]").fill(
        (datetime.now(UTC) + timedelta(hours=7) - timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M"))
    page.locator("main form button[type=submit]").last.click()
    page.wait_for_load_state()
    assert re.search(r"/incidents/\d+$", page.url), page.url
    text = _words(page)
    assert phone.t("Bước tiếp theo") in text
    assert phone.t("Chưa rõ (hạn thông báo 72 giờ vẫn áp dụng)") in text
    heading = page.locator("h1").inner_text()
    assert "Người có công, bảo trợ xã hội, hộ nghèo" in heading  # tells it from other reports
    found = sorted({m.group(1) for m in codes.finditer(text)})
    assert found == [], found
    phone.shot("reported")
    page.goto(phone.url("/incidents/mine"))
    phone.shot("mine")
    phone.check()
