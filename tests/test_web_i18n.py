"""Catalogs: every string extracted has an English translation, the .mo matches the .po,
pages switch language, and times are shown in Asia/Ho_Chi_Minh as dd/mm/yyyy."""

from __future__ import annotations

import re
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

from service.web import i18n
from tests.conftest import csrf_token_from

PLACEHOLDER = re.compile(r"%\((\w+)\)s")


def _read_po(path: Path):
    with path.open("rb") as fh:
        return read_po(fh)


@pytest.fixture(scope="module")
def extracted(tmp_path_factory):
    """Run the real pybabel extraction (babel.cfg) into a temporary .pot."""
    pot = tmp_path_factory.mktemp("i18n") / "messages.pot"
    i18n.extract(pot)
    return _read_po(pot)


def test_extraction_finds_the_interface_strings(extracted):
    ids = {m.id for m in extracted if m.id}
    # One string from each kind of source: a template, a view, a lazy label, a form.
    for msgid in ("Tổng quan", "Đã đăng xuất.", "Công an xã", "Nhập tên đăng nhập."):
        assert msgid in ids
    assert len(ids) > 200


def test_every_extracted_message_has_an_english_translation(extracted):
    catalog = _read_po(i18n.po_path("en"))
    translated = {m.id: m for m in catalog if m.id}
    missing = [m.id for m in extracted if m.id and (
        m.id not in translated or not translated[m.id].string or translated[m.id].fuzzy)]
    assert missing == [], (
        "untranslated strings; run `python -m service.web.i18n update`, translate them in "
        "service/translations/en/LC_MESSAGES/messages.po, then `python -m service.web.i18n compile`")


def test_translations_keep_their_placeholders():
    catalog = _read_po(i18n.po_path("en"))
    wrong = [m.id for m in catalog if m.id and m.string
             and sorted(PLACEHOLDER.findall(m.id)) != sorted(PLACEHOLDER.findall(m.string))]
    assert wrong == []
    assert [e for _m, errors in catalog.check() for e in errors] == []


def test_committed_mo_is_compiled_from_the_po():
    po_path = i18n.po_path("en")
    catalog = _read_po(po_path)
    with po_path.with_suffix(".mo").open("rb") as fh:
        compiled = read_mo(fh)
    want = {m.id: m.string for m in catalog if m.id and m.string and not m.fuzzy}
    have = {m.id: m.string for m in compiled if m.id}
    assert have == want, "run `python -m service.web.i18n compile` and commit the .mo"


def test_pybabel_compile_of_the_po_gives_the_committed_catalogue(tmp_path):
    # The real tool compiles the .po; its messages, not its bytes, must match the committed .mo
    # (Babel releases differ in how they lay out the file: 2.19 broke a byte-for-byte check).
    src = i18n.po_path("en")
    target = tmp_path / "en" / "LC_MESSAGES"
    target.mkdir(parents=True)
    (target / "messages.po").write_bytes(src.read_bytes())
    subprocess.run([*i18n.pybabel(), "compile", "-d", str(tmp_path)], check=True,
                   capture_output=True)
    with (target / "messages.mo").open("rb") as fh:
        fresh = {m.id: m.string for m in read_mo(fh) if m.id}
    with src.with_suffix(".mo").open("rb") as fh:
        committed = {m.id: m.string for m in read_mo(fh) if m.id}
    assert fresh, "pybabel compiled no message"
    assert committed == fresh, "run `python -m service.web.i18n compile` and commit the .mo"


def test_translation_directory_is_the_catalog_folder(app):
    from flask_babel import get_babel

    with app.app_context():
        dirs = [Path(d).resolve() for d in get_babel().translation_directories]
    assert i18n.TRANSLATIONS.resolve() in dirs
    assert (i18n.TRANSLATIONS / "en" / "LC_MESSAGES" / "messages.mo").is_file()


def _switch(client, lang: str, back_to: str) -> None:
    token = csrf_token_from(client, back_to)
    response = client.post(f"/lang/{lang}", data={"csrf_token": token, "next": back_to})
    assert response.status_code == 302
    assert response.headers["Location"].endswith(back_to)


def test_vietnamese_by_default_and_english_on_request(client, make_user, login):
    make_user("lan", "leader")
    login("lan")
    page = client.get("/dashboard")
    assert '<html lang="vi">' in page.text
    assert "Sự cố chưa được xác nhận" in page.text
    _switch(client, "en", "/dashboard")
    page = client.get("/dashboard")
    assert '<html lang="en">' in page.text
    assert "Unacknowledged incidents" in page.text
    assert "Sự cố chưa được xác nhận" not in page.text
    _switch(client, "vi", "/dashboard")
    assert "Sự cố chưa được xác nhận" in client.get("/dashboard").text


def test_language_switch_refuses_foreign_redirects(client):
    token = csrf_token_from(client, "/login")
    for target in ("https://evil.example/", "//evil.example/", "/\\evil.example"):
        response = client.post("/lang/en", data={"csrf_token": token, "next": target})
        assert response.headers["Location"] in ("/", "http://localhost/")
    assert '<html lang="en">' in client.get("/login").text
    response = client.post("/lang/fr", data={"csrf_token": token, "next": "/login"})
    assert response.status_code == 302
    assert '<html lang="en">' in client.get("/login").text  # an unknown language changes nothing


def test_language_switch_keeps_the_query_string(client, make_user, login):
    # A mail link leads to /login?next=/incidents/5/acknowledge; switching language there
    # must not lose where the reader was going.
    page = client.get("/login?next=/incidents/5/acknowledge").text
    assert 'name="next" value="/login?next=/incidents/5/acknowledge"' in page
    make_user("hoa", "admin")
    login("hoa")
    token = csrf_token_from(client, "/admin/tokens")
    created = client.post("/admin/tokens/new", data={"csrf_token": token, "source": "may-01"})
    # Rendered by a POST-only route: switching language from there leads home, not to a 405.
    assert 'name="next" value="/"' in created.text


def test_times_are_shown_in_ho_chi_minh_as_dd_mm_yyyy(app):
    from service.web.wiring import local_date, local_time

    with app.app_context():
        # 17:30 UTC on 31 Dec is 00:30 on 1 Jan in UTC+7: the date rolls over.
        moment = datetime(2026, 12, 31, 17, 30, 5, tzinfo=UTC)
        assert local_time(moment) == "01/01/2027 00:30"
        assert local_time(moment, with_seconds=True) == "01/01/2027 00:30:05"
        assert local_date(moment) == "01/01/2027"
        assert local_time(None) == "—"


def test_english_form_errors_are_translated(client, make_user, login):
    make_user("quan-tri", "admin")
    login("quan-tri")
    _switch(client, "en", "/admin/users/new")
    token = csrf_token_from(client, "/admin/users/new")
    page = client.post("/admin/users/new", data={"csrf_token": token, "username": "Bad Name!",
                                                 "email": "nope"})
    assert page.status_code == 400
    for text in ("A user name has only lower-case letters", "Invalid email address.",
                 "Choose at least one role.", "Enter a password."):
        assert text in page.text


def test_template_words_follow_a_forced_locale_within_one_request(app):
    from flask import render_template_string, session
    from flask_babel import force_locale

    with app.test_request_context("/"):
        session["lang"] = "en"
        template = "{{ _('Bộ lọc') }}"
        assert render_template_string(template) == "Filters"
        with force_locale("vi"):  # a mail in Vietnamese, rendered from an English page
            assert render_template_string(template) == "Bộ lọc"
        assert render_template_string(template) == "Filters"


def test_labels_follow_a_forced_locale_within_one_request(app):
    from flask import session
    from flask_babel import force_locale

    from service.web.labels import label

    with app.test_request_context("/"):
        session["lang"] = "en"
        assert label("open", "action") == "Open"
        with force_locale("vi"):
            assert label("open", "action") == "Mở"
        assert label("open", "action") == "Open"
