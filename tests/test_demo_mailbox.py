"""The demo's mailbox page: caught mail readable in the browser, escaped, and only in the demo."""

from __future__ import annotations

from email.message import EmailMessage

import pytest

from service import demo_mailbox

HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def _catch(folder, name: str, *, subject: str, to: str, text: str, html: str | None = None,
           attachment: bytes | None = None) -> None:
    message = EmailMessage()
    message["Subject"] = subject
    message["From"] = "canhgac@nhanly.demo"
    message["To"] = to
    message["Date"] = "Mon, 07 Dec 2026 03:53:55 +0000"
    message.set_content(text)
    if html is not None:
        message.add_alternative(html, subtype="html")
    if attachment is not None:
        message.add_attachment(attachment, maintype="application", subtype="pdf",
                               filename="mau-so-08.pdf")
    (folder / name).write_bytes(bytes(message))


@pytest.fixture
def mail_folder(app, tmp_path):
    folder = tmp_path / "demo-mail"
    folder.mkdir()
    demo_mailbox.enable(app, folder)
    return folder


def test_caught_mail_is_listed_and_read_with_everything_escaped(mail_folder, client, make_user,
                                                                 login):
    make_user("congan", "police", email="congan@nhanly.demo")
    _catch(mail_folder, "1765079635000000000-a1b2c3.eml", subject="[Canh Gác] Sự cố #1 " + HOSTILE,
           to="congan@nhanly.demo", text="Sự cố mới.\n" + HOSTILE + "\n— canhgac.nhanly.langson/audit",
           html="<p>HTML part</p><script>steal()</script>", attachment=b"%PDF-1.7 demo")
    _catch(mail_folder, "1765079636000000000-d4e5f6.eml", subject="Thư khác", to="lanhdao@nhanly.demo",
           text="khác")
    assert login("congan").status_code == 302

    page = client.get("/demo/mail/")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "<script>alert" not in html and "<img" not in html  # only text, never markup
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html
    # Newest first; the viewer's own mail marked.
    assert html.index("Thư khác") < html.index("Sự cố #1")
    assert 'class="mine"' in html
    assert "07/12/2026 10:53:55" in html  # local time

    page = client.get("/demo/mail/1765079635000000000-a1b2c3.eml")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "<script>" not in html and "<img" not in html
    assert "steal()" not in html  # the HTML part is never shown
    assert "Sự cố mới." in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "mau-so-08.pdf (13 B)" in html

    saved = client.get("/demo/mail/1765079635000000000-a1b2c3.eml/eml")
    assert saved.status_code == 200
    assert saved.headers["Content-Disposition"].startswith("attachment;")
    assert saved.data == (mail_folder / "1765079635000000000-a1b2c3.eml").read_bytes()


def test_only_the_catchers_files_can_be_opened(mail_folder, client, make_user, login, data_dir):
    make_user("canbo", "official")
    (mail_folder / "ghi-chu.eml").write_text("Subject: not caught\n\nx\n", encoding="utf-8")
    assert login("canbo").status_code == 302
    for name in ("ghi-chu.eml", "..%2Fcanhgac.db", "1-abcdef.eml", "1765079635000000000-A1B2C3.eml"):
        assert client.get(f"/demo/mail/{name}").status_code == 404, name
        assert client.get(f"/demo/mail/{name}/eml").status_code == 404, name
    assert "not caught" not in client.get("/demo/mail/").get_data(as_text=True)


def test_the_mailbox_needs_a_login(mail_folder, client):
    response = client.get("/demo/mail/")
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_the_service_has_no_mailbox_outside_the_demo(client, make_user, login):
    make_user("congan", "police")
    assert login("congan").status_code == 302
    assert client.get("/demo/mail/").status_code == 404
