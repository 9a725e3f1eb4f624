"""`canhgac incident list` and `canhgac incident show ID`."""

from __future__ import annotations

import json
from zoneinfo import ZoneInfo

import click
from sqlalchemy import select

from service.audit import log
from service.audit.models import AuditEntry
from service.core.cliutil import with_app
from service.core.db import get_session
from service.incidents.models import OPEN_STATES, Incident, IncidentState
from service.web.labels import label_vi


def _local(app, value) -> str:
    if value is None:
        return "—"
    zone = ZoneInfo(app.config["SETTINGS"].timezone)
    return value.astimezone(zone).strftime("%d/%m/%Y %H:%M")


@click.group("incident")
def incident_cli() -> None:
    """Xem sự cố / inspect incidents."""


@incident_cli.command("list")
@click.option("--all", "show_all", is_flag=True, help="Cả sự cố đã đóng, bác bỏ / include closed")
@click.option("--state", type=click.Choice([s.value for s in IncidentState]), default=None)
@with_app
def incident_list(app, show_all, state) -> None:
    """List incidents (open ones unless --all or --state), oldest unacknowledged first."""
    session = get_session()
    query = select(Incident)
    if state:
        query = query.where(Incident.state == state)
    elif not show_all:
        query = query.where(Incident.state.in_([str(s) for s in OPEN_STATES]))
    rows = session.scalars(query.order_by(Incident.id)).all()
    rows.sort(key=lambda i: (not i.is_open, i.state != IncidentState.REPORTED, i.id))
    if not rows:
        click.echo("Không có sự cố nào / no incidents")
        return
    for incident in rows:
        due = ""
        if incident.notice_due_at and incident.notice_sent_at is None and incident.is_open:
            due = f"  hạn thông báo/notice due {_local(app, incident.notice_due_at)}"
        click.echo(f"#{incident.id}\t{label_vi(incident.state, 'incident_state')}\t"
                   f"{label_vi(incident.severity, 'severity')}\t"
                   f"{_local(app, incident.detected_at)}\t{incident.title}{due}")


@incident_cli.command("show")
@click.argument("incident_id", type=int)
@with_app
def incident_show(app, incident_id) -> None:
    """Show one incident with its timeline from the audit trail (the look is audited)."""
    session = get_session()
    incident = session.get(Incident, incident_id)
    if incident is None:
        raise click.ClickException(f"Không có sự cố #{incident_id} / no such incident")
    lines = [
        f"Sự cố / incident #{incident.id}: {incident.title}",
        f"  trạng thái / state: {label_vi(incident.state, 'incident_state')} ({incident.state})",
        f"  mức độ / severity: {label_vi(incident.severity, 'severity')}; "
        f"nguồn / origin: {label_vi(incident.origin, 'origin')}"
        + (f"; quy tắc / rule: {label_vi(incident.rule_id, 'rule')} ({incident.rule_id})"
           if incident.rule_id else ""),
        f"  phát hiện / detected: {_local(app, incident.detected_at)}; "
        f"ghi nhận / recorded: {_local(app, incident.created_at)}; số lần / hits: {incident.hit_count}",
        f"  dữ liệu cá nhân / personal data: {'có/yes' if incident.involves_personal_data else 'không/no'}"
        + (f"; hạn thông báo / notice due: {_local(app, incident.notice_due_at)}"
           if incident.notice_due_at else "")
        + (f"; đã gửi / sent: {_local(app, incident.notice_sent_at)}" if incident.notice_sent_at else ""),
    ]
    if incident.data_classes:
        names = ", ".join(label_vi(c, "data_class") for c in incident.data_classes)
        lines.append(f"  loại dữ liệu / data classes: {names}")
    if incident.summary:
        lines.append(f"  mô tả / summary: {incident.summary}")
    lines.append("Diễn biến / timeline:")
    for entry in session.scalars(select(AuditEntry).where(AuditEntry.incident_id == incident.id)
                                 .order_by(AuditEntry.seq)):
        body = json.loads(entry.body).get("body", {})
        by = body.get("by") or body.get("recipient") or ""
        what = f"{label_vi(entry.kind, 'entry_kind')} ({entry.kind})"
        lines.append(f"  {_local(app, entry.recorded_at)}  #{entry.seq}  {what}  {by}".rstrip())
    for comment in incident.comments:
        lines.append(f"  {_local(app, comment.created_at)}  bình luận / comment: {comment.body}")
    log.record(session, "audit.viewed", {"actor": "cli", "what": "incident_timeline",
                                         "incident": incident.id})
    session.commit()
    click.echo("\n".join(lines))
