"""The demo's mailbox page: the mail `canhgac demo` caught, readable in the browser.

Registered only by `canhgac demo` (never by `canhgac serve`): it reads the .eml files of the
demo's mail catcher. Everything shown comes from a message and is escaped by the templates; only
the plain-text part is shown, never a message's HTML, so a message cannot run script in the page.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import parsedate_to_datetime
from pathlib import Path

from flask import Blueprint, abort, current_app, render_template, send_file
from flask_login import current_user

from service.auth.access import roles_required

bp = Blueprint("demo_mail", __name__, url_prefix="/demo/mail")
MAIL_DIR_KEY = "CANHGAC_DEMO_MAIL_DIR"
# The catcher names files <nanoseconds>-<6 hex>.eml; any other name is not one of its messages.
_NAME = re.compile(r"\A[0-9]{1,25}-[0-9a-f]{6}\.eml\Z")


@dataclass(frozen=True)
class CaughtMail:
    """One caught message, as the page shows it."""

    name: str
    subject: str
    sender: str
    to: str
    sent_at: datetime | None
    text: str | None = None
    attachments: tuple[tuple[str, int], ...] = ()


def _folder() -> Path:
    return Path(current_app.config[MAIL_DIR_KEY])


def _header(message: EmailMessage, name: str) -> str:
    try:
        return str(message.get(name, ""))
    except (ValueError, TypeError):  # a malformed header shows as empty, not as an error page
        return ""


def _sent_at(message: EmailMessage) -> datetime | None:
    try:
        value = parsedate_to_datetime(_header(message, "Date"))
    except (TypeError, ValueError):
        return None
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


def read_mail(path: Path, *, with_body: bool = False) -> CaughtMail:
    """Parse one caught .eml file (with its plain text and attachment names when asked)."""
    message = message_from_bytes(path.read_bytes(), policy=policy.default)
    text, attachments = None, []
    if with_body:
        part = message.get_body(("plain",))
        try:
            text = part.get_content() if part is not None else None
        except (LookupError, ValueError):  # an unknown charset: show what can be decoded
            text = part.get_payload(decode=True).decode("utf-8", "replace") if part else None
        for attachment in message.iter_attachments():
            payload = attachment.get_payload(decode=True) or b""
            attachments.append((attachment.get_filename() or "?", len(payload)))
    return CaughtMail(name=path.name, subject=_header(message, "Subject"),
                      sender=_header(message, "From"), to=_header(message, "To"),
                      sent_at=_sent_at(message), text=text, attachments=tuple(attachments))


def caught_mail() -> list[CaughtMail]:
    """Return every caught message, newest first."""
    paths = sorted((p for p in _folder().glob("*.eml") if _NAME.match(p.name)), reverse=True)
    return [read_mail(path) for path in paths]


@bp.route("/")
@roles_required()
def mailbox():
    """List the mail the demo caught; the viewer's own first."""
    messages = caught_mail()
    email = (current_user.email or "").lower()
    return render_template("demo/mailbox.html", messages=messages, own_email=email,
                           folder=_folder())


def _path(name: str) -> Path:
    if not _NAME.match(name):
        abort(404)
    path = _folder() / name
    if not path.is_file():
        abort(404)
    return path


@bp.route("/<name>")
@roles_required()
def message(name: str):
    """Show one caught message: headers, plain text, attachment names."""
    return render_template("demo/message.html", mail=read_mail(_path(name), with_body=True))


@bp.route("/<name>/eml")
@roles_required()
def message_file(name: str):
    """Download one caught message as the .eml file a mail program saves (never shown inline)."""
    data = _path(name).read_bytes()  # small; read whole, so no file stays open with the response
    return send_file(io.BytesIO(data), mimetype="message/rfc822", as_attachment=True,
                     download_name="thu-" + name)


def enable(app, folder: Path) -> None:
    """Serve the mailbox of the demo's mail catcher (the demo calls this; nothing else does)."""
    app.config[MAIL_DIR_KEY] = str(folder)
    app.register_blueprint(bp)
