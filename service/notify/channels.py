"""Delivery channels: SMTP (smtplib), webhook (JSON POST signed with HMAC-SHA256), local command.

Each channel raises on failure and returns on acceptance; the dispatcher turns that into a
retry or a delivered row. Nothing here touches the database.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import shlex
import smtplib
import ssl
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from service.config import Settings
from service.core.logging import mask_text
from service.notify.models import Channel

SIGNATURE_HEADER = "X-CanhGac-Signature"
TIMESTAMP_HEADER = "X-CanhGac-Timestamp"
MESSAGE_ID_HEADER = "X-CanhGac-Message-Id"
USER_AGENT = "CanhGac-notify/1"


class DeliveryError(Exception):
    """A channel refused or could not take a message; the message will be retried."""


class WebhookStatusError(DeliveryError):
    """The webhook answered with a status other than 2xx."""


class CommandFailedError(DeliveryError):
    """The local command exited with a non-zero status."""


class ChannelNotConfiguredError(DeliveryError):
    """The message's channel has no setting any more (e.g. smtp_host removed)."""


@dataclass(frozen=True)
class MessageSnapshot:
    """What a channel needs of an outbox row, detached from any session."""

    id: int
    kind: str
    channel: str
    incident_id: int | None
    recipient_username: str | None
    address: str | None
    subject: str
    body: str
    link: str | None
    message_id: str
    created_at: datetime
    attempts: int


def thread_id(snapshot: MessageSnapshot) -> str | None:
    """Return a per-incident Message-ID every mail about it references (clients thread them)."""
    if snapshot.incident_id is None:
        return None
    domain = snapshot.message_id.rsplit("@", 1)[-1].rstrip(">")
    return f"<incident-{snapshot.incident_id}@{domain}>"


_HEADER_LINE_MAX = 400


def build_email(snapshot: MessageSnapshot, settings: Settings) -> EmailMessage:
    """Build the UTF-8 mail; headers depend only on the row, so a retry is the same mail."""
    msg = EmailMessage()
    msg["From"] = settings.mail_from
    msg["To"] = snapshot.address or ""
    msg["Subject"] = snapshot.subject
    msg["Date"] = format_datetime(snapshot.created_at.astimezone(ZoneInfo(settings.timezone)))
    msg["Message-ID"] = snapshot.message_id
    reference = thread_id(snapshot)
    if reference:
        msg["References"] = reference
    # RFC 3834: tells mail servers and auto-responders this is machine mail (no vacation replies).
    msg["Auto-Submitted"] = "auto-generated"
    msg["Content-Language"] = "vi"
    msg["X-CanhGac-Kind"] = snapshot.kind
    if snapshot.incident_id is not None:
        msg["X-CanhGac-Incident"] = str(snapshot.incident_id)
    msg.set_content(snapshot.body, charset="utf-8")
    # CPython folds long non-ASCII subjects into encoded words that drop the space between
    # them ("ra thiết" arrives as "rathiết"). The body is already encoded at 76 columns, so a
    # longer header line limit only changes how headers are folded.
    msg.policy = msg.policy.clone(max_line_length=_HEADER_LINE_MAX)
    return msg


def _is_connection_error(exc: BaseException) -> bool:
    # smtplib.SMTPException derives from OSError; a refused recipient leaves the link usable.
    if isinstance(exc, smtplib.SMTPServerDisconnected | smtplib.SMTPConnectError):
        return True
    return isinstance(exc, OSError) and not isinstance(exc, smtplib.SMTPException)


class SmtpChannel:
    """One SMTP connection reused for the messages of a dispatch pass."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._smtp: smtplib.SMTP | None = None

    def _connect(self) -> smtplib.SMTP:
        s = self.settings
        if not s.smtp_host:
            raise ChannelNotConfiguredError("smtp_host is not set")
        smtp = smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=s.smtp_timeout_seconds)
        try:
            if s.smtp_starttls:
                smtp.starttls(context=ssl.create_default_context())
            if s.smtp_user:
                smtp.login(s.smtp_user, s.smtp_password or "")
        except BaseException:
            smtp.close()
            raise
        return smtp

    def send(self, snapshot: MessageSnapshot) -> None:
        """Send one mail; raise on refusal or a broken connection."""
        if self._smtp is None:
            self._smtp = self._connect()
        try:
            self._smtp.send_message(build_email(snapshot, self.settings),
                                    from_addr=self.settings.mail_from,
                                    to_addrs=[snapshot.address or ""])
        except Exception as exc:
            if _is_connection_error(exc):
                self.close()
            else:
                self._reset()
            raise

    def _reset(self) -> None:
        try:
            if self._smtp is not None:
                self._smtp.rset()
        except (smtplib.SMTPException, OSError):
            self.close()

    def close(self) -> None:
        """Say QUIT (politely, if the link still works) and drop the connection."""
        smtp, self._smtp = self._smtp, None
        if smtp is None:
            return
        try:
            smtp.quit()
        except (smtplib.SMTPException, OSError):
            smtp.close()


def payload(snapshot: MessageSnapshot, sent_at: str) -> dict:
    """Return the JSON document the webhook and the local command receive."""
    return {
        "message_id": snapshot.message_id,
        "kind": snapshot.kind,
        "incident_id": snapshot.incident_id,
        "subject": snapshot.subject,
        "text": snapshot.body,
        "link": snapshot.link,
        "created_at": snapshot.created_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "sent_at": sent_at,
    }


def sign_body(body: bytes, secret: str) -> str:
    """Return the signature header value: sha256=<hex HMAC-SHA256 of the body>."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def verify_signature(body: bytes, secret: str, header: str | None) -> bool:
    """Check a signature header against a body (for receivers written in Python)."""
    return bool(header) and hmac.compare_digest(sign_body(body, secret), header)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # A redirected POST would be re-sent as GET or to another host; treat it as a failure.
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


def send_webhook(snapshot: MessageSnapshot, settings: Settings, now: datetime) -> None:
    """POST the message as JSON, signed; any status but 2xx raises."""
    url = settings.webhook_url
    if not url:
        raise ChannelNotConfiguredError("webhook_url is not set")
    if urlsplit(url).scheme not in ("http", "https"):
        raise DeliveryError("webhook_url must be http or https")
    timestamp = str(int(now.timestamp()))
    # The timestamp is in the signed body as well as in the header, so it cannot be replaced.
    body = json.dumps(payload(snapshot, timestamp), ensure_ascii=False,
                      separators=(",", ":")).encode("utf-8")
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "User-Agent": USER_AGENT,
        TIMESTAMP_HEADER: timestamp,
        MESSAGE_ID_HEADER: snapshot.message_id,
    }
    if settings.webhook_secret:
        headers[SIGNATURE_HEADER] = sign_body(body, settings.webhook_secret)
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310 - scheme checked above
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(request, timeout=settings.webhook_timeout_seconds) as response:
            status = response.status
            response.read(65536)
    except urllib.error.HTTPError as exc:
        exc.close()
        raise WebhookStatusError(f"HTTP {exc.code}") from None
    if not 200 <= status < 300:
        raise WebhookStatusError(f"HTTP {status}")


def run_command(snapshot: MessageSnapshot, settings: Settings, now: datetime) -> None:
    """Run the local command with the message as JSON on stdin; non-zero exit raises."""
    if not settings.notify_command:
        raise ChannelNotConfiguredError("notify_command is not set")
    argv = shlex.split(settings.notify_command)
    data = json.dumps(payload(snapshot, str(int(now.timestamp()))), ensure_ascii=False)
    result = subprocess.run(
        argv, input=data.encode("utf-8"), capture_output=True, check=False,
        timeout=settings.notify_command_timeout_seconds,
    )
    if result.returncode != 0:
        detail = mask_text(result.stderr.decode("utf-8", "replace").strip())[-200:]
        raise CommandFailedError(f"exit status {result.returncode}: {detail}")


class Deliverer:
    """Route snapshots to their channel; keeps the SMTP connection for one pass."""

    def __init__(self, settings: Settings, session=None) -> None:
        from service.notify.sms import SmsChannel

        self.settings = settings
        self.smtp = SmtpChannel(settings)
        # The SMS channel keeps its reply code's hash through the dispatcher's session.
        self.sms = SmsChannel(settings, session)

    def deliver(self, snapshot: MessageSnapshot, now: datetime) -> None:
        """Deliver one message or raise."""
        if snapshot.channel == Channel.EMAIL:
            self.smtp.send(snapshot)
        elif snapshot.channel == Channel.WEBHOOK:
            send_webhook(snapshot, self.settings, now)
        elif snapshot.channel == Channel.COMMAND:
            run_command(snapshot, self.settings, now)
        elif snapshot.channel == Channel.SMS:
            self.sms.send(snapshot, now)
        else:
            raise DeliveryError(f"unknown channel {snapshot.channel!r}")

    def close(self) -> None:
        """Close any open connection."""
        self.smtp.close()


def configured_channels(settings: Settings) -> list[str]:
    """Return the channels the settings can deliver on now."""
    channels = []
    if settings.smtp_host:
        channels.append(Channel.EMAIL.value)
    if settings.webhook_url:
        channels.append(Channel.WEBHOOK.value)
    if settings.notify_command:
        channels.append(Channel.COMMAND.value)
    if settings.sms_outbox_dir:
        channels.append(Channel.SMS.value)
    return channels
