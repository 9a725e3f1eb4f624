"""Incident pages: report form, my reports, incident list and detail, alert queue, downloads."""

from __future__ import annotations

import io
import json
from datetime import datetime

from flask import (
    Blueprint,
    Flask,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    send_file,
    url_for,
)
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from sqlalchemy import select

from service.audit import log
from service.audit.models import AuditEntry
from service.auth.access import roles_required
from service.auth.models import User
from service.core.db import get_session, utcnow, writing
from service.incidents import forms as F
from service.incidents import workflow as W
from service.incidents.models import (
    OPEN_STATES,
    Alert,
    AlertState,
    Incident,
    IncidentEvidence,
    IncidentState,
)
from service.incidents.schemas import FormDefinitionError, load_form
from service.web.labels import ENTRY_KIND_NAMES, INCIDENT_STATE_NAMES, label

bp = Blueprint("incidents", __name__, url_prefix="/incidents")

STATE_TEXT = INCIDENT_STATE_NAMES  # one vocabulary: service/web/labels.py
ACTION_TEXT = {
    "acknowledge": _l("Xác nhận đã nhận"),
    "start_investigation": _l("Bắt đầu điều tra"),
    "contain": _l("Ghi nhận đã ngăn chặn"),
    "resolve": _l("Ghi nhận đã khắc phục"),
    "close": _l("Đóng sự cố"),
    "dismiss": _l("Bác bỏ sự cố"),
}
ACTION_DONE = {
    "acknowledge": _l("Đã xác nhận đã nhận sự cố."),
    "start_investigation": _l("Đã chuyển sang điều tra."),
    "contain": _l("Đã ghi nhận ngăn chặn."),
    "resolve": _l("Đã ghi nhận khắc phục."),
    "close": _l("Đã đóng sự cố."),
    "dismiss": _l("Đã bác bỏ sự cố; lãnh đạo đã được thông báo."),
}
ACTION_FORMS = {
    "acknowledge": F.ConfirmForm,
    "start_investigation": F.ConfirmForm,
    "contain": F.ContainForm,
    "resolve": F.ResolveForm,
    "close": F.CloseForm,
    "dismiss": F.ReasonForm,
}

# One vocabulary for every page, mail and file: service/web/labels.py.
ENTRY_TEXT = ENTRY_KIND_NAMES
DETAIL_TEXT = {
    "origin": _l("Nguồn"), "severity": _l("Mức độ"), "rule_id": _l("Quy tắc"),
    "reason": _l("Lý do"), "actions": _l("Biện pháp"), "cause": _l("Nguyên nhân"),
    "measures": _l("Biện pháp khắc phục"), "note": _l("Ghi chú"),
    "no_notice_reason": _l("Lý do không gửi thông báo"), "level": _l("Lần báo động"),
    "minutes_unacknowledged": _l("Số phút chưa xác nhận"), "hour": _l("Giờ thứ"),
    "filename": _l("Tệp"), "size": _l("Kích thước (byte)"), "sha256": "SHA-256",
    "channel": _l("Kênh"), "reference": _l("Số văn bản"), "late_reason": _l("Lý do gửi muộn"),
    "is_late": _l("Gửi muộn"), "hit_count": _l("Số lần"), "document": _l("Văn bản"),
    "minutes_after_report": _l("Số phút sau khi báo cáo"), "length": _l("Độ dài"),
    "recipient": _l("Người nhận"), "kind": _l("Loại thông báo"),
}
DOCUMENTS = {
    "mau_08": ("render_breach_notice_pdf", "mau-08-thong-bao-vi-pham-su-co-{id}.pdf"),
    "bien_ban": ("render_minutes_pdf", "bien-ban-xac-nhan-su-co-{id}.pdf"),
}


def init_app(app: Flask) -> None:
    """Register the incident pages."""
    app.register_blueprint(bp)


# ---------------------------------------------------------------- helpers


def _settings():
    return current_app.config["SETTINGS"]


def _user() -> User:
    return current_user._get_current_object()


def _locale() -> str:
    from service.web.wiring import select_locale

    return select_locale()


def _incident_for_user(incident_id: int) -> Incident:
    # Someone else's report answers 404, not 403: its existence is not the official's business.
    incident = get_session().get(Incident, incident_id)
    if incident is None or not W.can_view(incident, _user()):
        abort(404)
    return incident


def _flash_form_errors(form) -> None:
    for field in form:
        for error in field.errors:
            flash(f"{field.label.text}: {error}", "error")


def deadline_info(incident: Incident, now: datetime | None = None) -> dict | None:
    """Describe the 72-hour notice deadline for people: remaining time or how late."""
    if not incident.involves_personal_data or incident.notice_due_at is None:
        return None
    if incident.notice_sent_at is not None:
        return {"text": _("Đã gửi thông báo"), "is_overdue": False, "is_done": True}
    if incident.state in (IncidentState.DISMISSED, IncidentState.CLOSED):
        return None  # closed without a notice means a written reason is on the incident
    now = now or utcnow()
    seconds = int((incident.notice_due_at - now).total_seconds())
    hours, minutes = divmod(abs(seconds) // 60, 60)
    if seconds >= 0:
        text = _("Còn %(h)s giờ %(m)s phút", h=hours, m=minutes)
    else:
        text = _("Quá hạn %(h)s giờ %(m)s phút", h=hours, m=minutes)
    return {"text": text, "is_overdue": seconds < 0, "is_done": False}


def _sort_key(incident: Incident):
    # Open first, unacknowledged first, nearest 72-hour deadline first, newest first.
    due = incident.notice_due_at.timestamp() if incident.notice_due_at and \
        incident.notice_sent_at is None else float("inf")
    return (not incident.is_open, incident.state != IncidentState.REPORTED, due,
            -incident.created_at.timestamp())


# Details whose values are codes: shown by their names.
DETAIL_VALUE_TABLE = {"origin": "origin", "severity": "severity", "rule_id": "rule",
                      "kind": "notify_kind", "channel": "channel"}


def _detail_value(key: str, value):
    if key in DETAIL_VALUE_TABLE and isinstance(value, str):
        return label(value, DETAIL_VALUE_TABLE[key])
    return value


def _timeline(session, incident: Incident) -> list[dict]:
    """Return the audit entries of the incident in order, each comment with its entry.

    A notification's queued and attempt entries fold into one line per sending (who it went
    to, whether it arrived), with each recipient's attempts kept for "details".
    """
    comments = {c.id: c for c in incident.comments}
    authors = {u.id: u.username for u in session.scalars(
        select(User).where(User.id.in_({c.author_id for c in comments.values() if c.author_id})))}
    items: list[dict] = []
    by_message: dict[int, dict] = {}
    entries = session.scalars(
        select(AuditEntry).where(AuditEntry.incident_id == incident.id).order_by(AuditEntry.seq)
    )
    for entry in entries:
        body = json.loads(entry.body).get("body", {})
        if entry.kind == "notify.queued":
            last = items[-1] if items else None
            if not (last and last["kind"] == "notify" and last["notify_kind"] == body.get("kind")
                    and last["is_queuing"]):
                last = {"at": entry.recorded_at, "seq": entry.seq, "kind": "notify",
                        "notify_kind": body.get("kind"), "is_queuing": True, "by": None,
                        "details": [], "comment": None, "recipients": []}
                items.append(last)
            recipient = {"name": body.get("recipient"), "channel": label(body.get("channel"), "channel"),
                         "attempts": 0, "is_delivered": False, "at": None, "error": None}
            last["recipients"].append(recipient)
            by_message[body.get("message")] = recipient
            continue
        if items and items[-1]["kind"] == "notify":
            items[-1]["is_queuing"] = False
        if entry.kind == "notify.attempt":
            recipient = by_message.get(body.get("message"))
            if recipient is not None:
                recipient["attempts"] = max(recipient["attempts"], int(body.get("attempt") or 0))
                recipient["at"] = entry.recorded_at
                recipient["is_delivered"] = recipient["is_delivered"] or body.get("outcome") == "delivered"
                recipient["error"] = None if recipient["is_delivered"] else body.get("error")
                continue
        comment = comments.pop(body.get("comment_id"), None) \
            if entry.kind == "incident.commented" else None
        details = [(DETAIL_TEXT[k], _detail_value(k, body[k])) for k in DETAIL_TEXT
                   if body.get(k) not in (None, "", []) and not (comment and k == "length")]
        items.append({"at": entry.recorded_at, "seq": entry.seq, "kind": entry.kind,
                      "text": label(entry.kind, "entry_kind"), "by": body.get("by"),
                      "details": details, "comment": comment.body if comment else None})
    for item in items:
        if item["kind"] == "notify":
            item["text"] = _notify_summary(item)
    for comment in comments.values():  # a comment without its entry would be a bug; show it
        items.append({"at": comment.created_at, "seq": None, "kind": "comment",
                      "text": _("Bình luận"), "by": authors.get(comment.author_id),
                      "details": [], "comment": comment.body})
    items.sort(key=lambda item: item["at"])
    return items


def _notify_summary(item: dict) -> str:
    """Return one line for a sending: what was sent, to how many, whether it arrived."""
    from service.web.wiring import local_time

    people = item["recipients"]
    delivered = [r for r in people if r["is_delivered"]]
    what = label(item["notify_kind"], "notify_kind")
    if people and len(delivered) == len(people):
        last = max(r["at"] for r in delivered)
        return _("%(what)s: đã gửi cho %(n)s người lúc %(t)s", what=what, n=len(people),
                 t=local_time(last))
    if delivered:
        return _("%(what)s: đã gửi cho %(ok)s/%(n)s người, %(left)s người chưa nhận được",
                 what=what, ok=len(delivered), n=len(people), left=len(people) - len(delivered))
    return _("%(what)s: đang chờ gửi cho %(n)s người", what=what, n=len(people))


def _render_detail(incident: Incident, *, forms: dict | None = None, status: int = 200):
    session = get_session()
    user = _user()
    is_staff = user.has_role("police", "leader")
    actions = W.allowed_actions(incident, user)
    action_forms = {a: ACTION_FORMS[a]() for a in actions}
    action_forms.update({k: v for k, v in (forms or {}).items() if k in action_forms})
    notice_form = None
    if W.can_record_notice(incident, user):
        notice_form = (forms or {}).get("notice") or F.NoticeSentForm()
        notice_form.channel.choices = F.notice_channel_choices()
        # No time filled in: "now" pre-filled invited recording a notice nobody had sent yet.
    reporter = session.get(User, incident.reporter_id) if incident.reporter_id else None
    timeline = _timeline(session, incident) if is_staff else []
    if is_staff:
        with writing(session):
            log.record(session, "audit.viewed", {"actor": user.username,
                                                 "what": "incident_timeline",
                                                 "incident": incident.id}, actor=user.username)
            session.commit()
    own_comments = [c for c in incident.comments if c.author_id == user.id]
    receipt_form = F.ConfirmForm() if W.can_confirm_receipt(session, incident, user) else None
    # A leader's substitute (service.auth.substitutes) gets the acknowledge step too.
    if "acknowledge" not in actions and W.can_acknowledge(session, incident, user):
        actions = ["acknowledge", *actions]
        action_forms["acknowledge"] = ACTION_FORMS["acknowledge"]()
    return render_template(
        "incidents/detail.html", incident=incident, reporter=reporter, is_staff=is_staff,
        receipt_form=receipt_form, receipts=_receipt_rows(session, incident) if is_staff else [],

        next_step=_next_step(incident, user, actions, notice_form),
        personal_text=_personal_text(incident),
        actions=actions, action_forms=action_forms, action_text=ACTION_TEXT,
        notice_form=notice_form, comment_form=(forms or {}).get("comment") or F.CommentForm(),
        evidence_form=F.EvidenceForm(), timeline=timeline, own_comments=own_comments,
        state_text=STATE_TEXT, deadline=deadline_info(incident),
        can_contribute=W.can_contribute(incident, user),
        form_rows=_form_rows(incident), channels=F.CHANNEL_LABELS,
    ), status


def _receipt_rows(session, incident: Incident) -> list[tuple[str, datetime, str]]:
    """Return (who, when, channel) of each police receipt confirmation."""
    rows = []
    for receipt in W.receipts(session, incident):
        who = session.get(User, receipt.user_id)
        rows.append((who.full_name or who.username, receipt.confirmed_at, receipt.channel))
    return rows

def _next_step(incident: Incident, user: User, actions: list[str], notice_form) -> str:
    """Return, in one sentence, what this viewer should do next on this incident."""
    if "acknowledge" in actions:
        return _("Việc của bạn: xác nhận đã nhận sự cố (nút bên dưới), rồi giao Công an xã xử lý.")
    if notice_form is not None and incident.notice_sent_at is None and incident.is_open:
        return _("Việc của bạn: gửi thông báo vi phạm (Mẫu số 08) cho cơ quan chuyên trách bảo vệ "
                 "dữ liệu cá nhân trước hạn, rồi ghi nhận ngày giờ đã gửi ở mục “Xử lý”.")
    # Dismissing is a way out, never the suggested next step.
    steps = [a for a in actions if a != "dismiss"]
    if steps:
        return _("Việc của bạn: %(step)s (mục “Xử lý” bên dưới).",
                 step=str(ACTION_TEXT[steps[0]]).lower())
    if not incident.is_open:
        return _("Sự cố đã kết thúc; không còn việc cần làm.")
    if incident.state == IncidentState.REPORTED:
        return _("Đang chờ lãnh đạo UBND xã xác nhận đã nhận sự cố.")
    if user.has_role("police", "leader"):
        return _("Đang được xử lý; theo dõi diễn biến bên dưới.")
    return _("Lãnh đạo UBND xã và Công an xã đã được thông báo. Bạn có thể thêm bình luận "
             "hoặc bằng chứng bên dưới.")


def _personal_text(incident: Incident) -> str:
    """Return the answer about personal data as given ("Chưa rõ" stays "Chưa rõ")."""
    try:
        definition = load_form(_settings().incident_forms_dir)
    except FormDefinitionError:
        definition = None
    field = definition.by_role("personal_data") if definition else None
    answer = (incident.form_data or {}).get(field.name) if field else None
    if answer == "unknown":
        return _("Chưa rõ (hạn thông báo 72 giờ vẫn áp dụng)")
    return _("Có") if incident.involves_personal_data else _("Không")


def _form_rows(incident: Incident) -> list[tuple[str, str]]:
    """Return the report form's answers as (label, text) in the form's order."""
    from service.web.wiring import local_time

    data = incident.form_data or {}
    try:
        definition = load_form(_settings().incident_forms_dir)
    except FormDefinitionError:
        return [(name, str(value)) for name, value in data.items() if value not in (None, "", [])]
    locale = _locale()
    rows = []
    for spec in definition.fields:
        value = data.get(spec.name)
        if value in (None, "", []) or spec.role == "summary":
            continue  # the summary is shown on its own
        if spec.type == "select":
            text = spec.option_label(str(value), locale)
        elif spec.type == "checkboxes":
            text = ", ".join(spec.option_label(v, locale) for v in value)
        elif spec.type == "datetime":
            try:
                text = local_time(datetime.fromisoformat(value))
            except (TypeError, ValueError):
                text = str(value)
        else:
            text = str(value)
        rows.append((spec.label.get(locale), text))
    return rows


# ---------------------------------------------------------------- report form (every user)


@bp.route("/report", methods=["GET", "POST"])
@roles_required()
def report():
    """Show and accept the incident report form."""
    settings = _settings()
    try:
        definition = load_form(settings.incident_forms_dir)
    except FormDefinitionError as exc:
        current_app.logger.error("incident form definition invalid: %s", exc)
        return render_template("error.html", code=500, message=None), 500
    form_class = F.build_report_form_class(definition, _locale(), settings.timezone)
    form = form_class()
    if request.method == "POST":
        is_valid = form.validate_on_submit()
        if not is_valid or F.needs_old_detection_confirmation(form, definition, settings.timezone):
            _flash_form_errors(form)
            return render_template("incidents/report.html", form=form, definition=definition,
                                   locale=_locale(), confirm_field=F.CONFIRM_OLD_FIELD), 400
        session = get_session()
        values = {spec.name: form[spec.name].data for spec in definition.fields}
        from flask_babel import force_locale

        unit = _user().unit
        with force_locale("vi"):  # the title is stored and mailed: in the commune's language
            unit_name = label(unit, "unit") if unit else None
        args = F.report_arguments(definition, values, settings.timezone, unit_name=unit_name)
        try:
            incident = W.report_incident(session, settings, origin="report", reporter=_user(),
                                         **args)
            evidence_field = definition.by_role("evidence")
            upload = values.get(evidence_field.name) if evidence_field else None
            if upload and getattr(upload, "filename", ""):
                W.attach_evidence(session, settings, incident, _user(), filename=upload.filename,
                                  data=upload.read(), content_type=upload.mimetype)
        except W.WorkflowError as exc:
            session.rollback()
            flash(str(exc), "error")
            return render_template("incidents/report.html", form=form, definition=definition,
                                   locale=_locale()), 400
        session.commit()
        flash(_("Đã gửi báo cáo sự cố #%(id)s. Lãnh đạo UBND xã và Công an xã đã được thông báo.",
                id=incident.id), "ok")
        return redirect(url_for("incidents.detail", incident_id=incident.id))
    return render_template("incidents/report.html", form=form, definition=definition,
                           locale=_locale())


@bp.route("/report/print")
@roles_required()
def report_print():
    """Show the blank report form for printing (for when there is no network)."""
    settings = _settings()
    try:
        definition = load_form(settings.incident_forms_dir)
    except FormDefinitionError as exc:
        current_app.logger.error("incident form definition invalid: %s", exc)
        return render_template("error.html", code=500, message=None), 500
    return render_template("incidents/report_print.html", definition=definition,
                           locale=_locale(), settings=settings)


@bp.route("/mine")
@roles_required()
def mine():
    """List the incidents the current user reported, with their state."""
    session = get_session()
    incidents = session.scalars(
        select(Incident).where(Incident.reporter_id == _user().id).order_by(Incident.id.desc())
    ).all()
    return render_template("incidents/mine.html", incidents=incidents, state_text=STATE_TEXT)


# ---------------------------------------------------------------- police and leaders


@bp.route("/")
@roles_required("police", "leader")
def index():
    """List incidents: open first, unacknowledged first, with the 72-hour deadline."""
    session = get_session()
    show = request.args.get("show", "open")
    query = select(Incident)
    if show == "open":
        query = query.where(Incident.state.in_([str(s) for s in OPEN_STATES]))
    elif show in {str(s) for s in IncidentState}:
        query = query.where(Incident.state == show)
    incidents = sorted(session.scalars(query.order_by(Incident.id.desc()).limit(500)),
                       key=_sort_key)
    open_alerts = session.scalar(
        select(Alert.id).where(Alert.state == AlertState.OPEN).limit(1)) is not None
    return render_template(
        "incidents/index.html", incidents=incidents, show=show, state_text=STATE_TEXT,
        deadlines={i.id: deadline_info(i) for i in incidents}, has_open_alerts=open_alerts,
        states=list(IncidentState),
    )


@bp.route("/<int:incident_id>")
@roles_required()
def detail(incident_id: int):
    """Show an incident: facts, deadline, timeline, and what the user may do now."""
    return _render_detail(_incident_for_user(incident_id))


@bp.route("/<int:incident_id>/acknowledge", methods=["GET", "POST"])
@roles_required("leader", "police")
def acknowledge(incident_id: int):
    """Acknowledge in one click (the link in the notification leads here after login).

    Police get the same mail and link: they see the incident and who may acknowledge it.
    """
    session = get_session()
    incident = _incident_for_user(incident_id)
    form = F.ConfirmForm()
    if request.method == "POST" and form.validate_on_submit():
        try:
            W.acknowledge_incident(session, incident, _user())
        except W.WorkflowPermissionError:
            session.rollback()
            abort(403)
        except W.WorkflowError as exc:
            session.rollback()
            flash(str(exc), "error")
            return redirect(url_for("incidents.detail", incident_id=incident.id))
        session.commit()
        flash(str(ACTION_DONE["acknowledge"]), "ok")
        return redirect(url_for("incidents.detail", incident_id=incident.id))
    acknowledged_by = session.get(User, incident.acknowledged_by_id) \
        if incident.acknowledged_by_id else None
    user = _user()
    return render_template("incidents/acknowledge.html", incident=incident, form=form,
                           state_text=STATE_TEXT, deadline=deadline_info(incident),
                           acknowledged_by=acknowledged_by,
                           can_acknowledge=W.can_acknowledge(session, incident, user),
                           receipt_form=F.ConfirmForm()
                           if W.can_confirm_receipt(session, incident, user) else None)


@bp.route("/<int:incident_id>/receipt", methods=["POST"])
@roles_required("police", "leader")
def confirm_receipt(incident_id: int):
    """Record that a police officer received the incident (not the leader's acknowledgement)."""
    session = get_session()
    incident = _incident_for_user(incident_id)
    form = F.ConfirmForm()
    if not form.validate_on_submit():
        _flash_form_errors(form)
        return redirect(url_for("incidents.detail", incident_id=incident.id))
    try:
        W.confirm_incident_receipt(session, incident, _user(), channel="web")
    except W.WorkflowPermissionError:
        session.rollback()
        abort(403)
    except W.WorkflowError as exc:
        session.rollback()
        flash(str(exc), "error")
        return redirect(url_for("incidents.detail", incident_id=incident.id))
    session.commit()
    flash(_("Đã ghi nhận Công an xã đã nhận tin về sự cố."), "ok")
    return redirect(url_for("incidents.detail", incident_id=incident.id))


@bp.route("/<int:incident_id>/transition/<action>", methods=["POST"])
@roles_required("police", "leader")
def transition(incident_id: int, action: str):
    """Perform one workflow step named by `action` (a POST form with CSRF)."""
    if action not in W.TRANSITIONS:
        abort(404)
    session = get_session()
    incident = _incident_for_user(incident_id)
    form = ACTION_FORMS[action]()
    if not form.validate_on_submit():
        _flash_form_errors(form)
        return _render_detail(incident, forms={action: form}, status=400)
    user = _user()
    try:
        if action == "acknowledge":
            W.acknowledge_incident(session, incident, user)
        elif action == "start_investigation":
            W.start_investigation(session, incident, user)
        elif action == "contain":
            W.contain_incident(session, incident, user, actions=form.actions.data)
        elif action == "resolve":
            W.resolve_incident(session, incident, user, cause=form.cause.data,
                               measures=form.measures.data)
        elif action == "close":
            W.close_incident(session, incident, user, note=form.note.data or "",
                             no_notice_reason=form.no_notice_reason.data)
        else:
            W.dismiss_incident(session, incident, user, reason=form.reason.data)
    except W.WorkflowPermissionError:
        session.rollback()
        abort(403)
    except W.WorkflowError as exc:
        session.rollback()
        flash(str(exc), "error")
        return _render_detail(session.get(Incident, incident_id), forms={action: form}, status=409)
    session.commit()
    flash(str(ACTION_DONE[action]), "ok")
    return redirect(url_for("incidents.detail", incident_id=incident.id))


@bp.route("/<int:incident_id>/notice-sent", methods=["POST"])
@roles_required("leader")
def notice_sent(incident_id: int):
    """Record that the notice (Mẫu số 08) was sent to the authority."""
    session = get_session()
    incident = _incident_for_user(incident_id)
    form = F.NoticeSentForm()
    form.channel.choices = F.notice_channel_choices()
    if not form.validate_on_submit():
        _flash_form_errors(form)
        return _render_detail(incident, forms={"notice": form}, status=400)
    try:
        W.record_breach_notice_sent(
            session, incident, _user(), sent_at=F.to_utc(form.sent_at.data, _settings().timezone),
            channel=form.channel.data, reference=form.reference.data,
            late_reason=form.late_reason.data,
        )
    except W.WorkflowError as exc:
        session.rollback()
        flash(str(exc), "error")
        return _render_detail(session.get(Incident, incident_id), forms={"notice": form},
                              status=409)
    session.commit()
    flash(_("Đã ghi nhận việc gửi thông báo vi phạm."), "ok")
    return redirect(url_for("incidents.detail", incident_id=incident.id))


@bp.route("/<int:incident_id>/comments", methods=["POST"])
@roles_required()
def comment(incident_id: int):
    """Add a comment (reporter, police, leader), at any state."""
    session = get_session()
    incident = _incident_for_user(incident_id)
    form = F.CommentForm()
    if not form.validate_on_submit():
        _flash_form_errors(form)
        return _render_detail(incident, forms={"comment": form}, status=400)
    try:
        W.add_comment(session, incident, _user(), form.body.data)
    except W.WorkflowPermissionError:
        abort(403)
    except W.WorkflowError as exc:
        session.rollback()
        flash(str(exc), "error")
        return _render_detail(incident, forms={"comment": form}, status=400)
    session.commit()
    flash(_("Đã thêm bình luận."), "ok")
    return redirect(url_for("incidents.detail", incident_id=incident.id) + "#binh-luan")


@bp.route("/<int:incident_id>/evidence", methods=["POST"])
@roles_required()
def upload_evidence(incident_id: int):
    """Add an evidence file (reporter, police, leader); it is stored encrypted."""
    session = get_session()
    incident = _incident_for_user(incident_id)
    form = F.EvidenceForm()
    upload = form.file.data if form.validate_on_submit() else None
    if not upload or not getattr(upload, "filename", ""):
        flash(_("Hãy chọn một tệp."), "error")
        return redirect(url_for("incidents.detail", incident_id=incident.id) + "#bang-chung")
    try:
        W.attach_evidence(session, _settings(), incident, _user(), filename=upload.filename,
                          data=upload.read(), content_type=upload.mimetype)
    except W.WorkflowPermissionError:
        abort(403)
    except W.WorkflowError as exc:
        session.rollback()
        flash(str(exc), "error")
        return redirect(url_for("incidents.detail", incident_id=incident.id) + "#bang-chung")
    session.commit()
    flash(_("Đã lưu bằng chứng (đã mã hóa)."), "ok")
    return redirect(url_for("incidents.detail", incident_id=incident.id) + "#bang-chung")


@bp.route("/evidence/<int:evidence_id>")
@roles_required("police", "leader")
def download_evidence(evidence_id: int):
    """Download an evidence file, decrypted; the download is recorded in the trail."""
    session = get_session()
    evidence = session.get(IncidentEvidence, evidence_id)
    if evidence is None:
        abort(404)
    try:
        with writing(session):  # the download is written to the trail with it
            data = W.read_evidence(session, _settings(), evidence, _user())
            session.commit()
    except (OSError, ValueError):
        current_app.logger.error("evidence %s unreadable or altered", evidence_id)
        return render_template("error.html", code=500, message=None), 500
    return send_file(io.BytesIO(data), mimetype=evidence.content_type, as_attachment=True,
                     download_name=evidence.filename)


@bp.route("/<int:incident_id>/documents/<document>.pdf")
@roles_required("police", "leader")
def document(incident_id: int, document: str):
    """Download Mẫu số 08 (mau_08) or the biên bản xác nhận (bien_ban) as PDF (audited)."""
    if document not in DOCUMENTS:
        abort(404)
    session = get_session()
    incident = _incident_for_user(incident_id)
    function_name, file_name = DOCUMENTS[document]
    try:
        from service.reports import documents
    except ModuleNotFoundError:
        flash(_("Chức năng tạo văn bản chưa sẵn sàng."), "error")
        return redirect(url_for("incidents.detail", incident_id=incident.id))
    data = getattr(documents, function_name)(incident, _settings(),
                                             data_class_labels=_data_class_labels())
    # The PDF was made in the page's read snapshot; only its record takes the write lock.
    with writing(session):
        W.record_document_download(session, incident, _user(), document=document, data=data)
        session.commit()
    return send_file(io.BytesIO(data), mimetype="application/pdf", as_attachment=True,
                     download_name=file_name.format(id=incident.id))


def _data_class_labels() -> dict[str, str]:
    """Return data class labels from the policy in force ({} when none is loaded)."""
    state = current_app.extensions.get("canhgac.policy_state")
    policy = getattr(state, "policy", None)
    classes = getattr(policy, "data_classes", None) or {}
    return {key: spec.label for key, spec in classes.items()}


# ---------------------------------------------------------------- police alert queue


@bp.route("/alerts")
@roles_required("police")
def alerts():
    """List open alerts, oldest first, each with 'open incident' and 'dismiss with reason'."""
    session = get_session()
    rows = session.scalars(
        select(Alert).where(Alert.state == AlertState.OPEN).order_by(Alert.created_at, Alert.id)
        .limit(500)
    ).all()
    from service.web.dashboard import alert_happened_at

    return render_template("incidents/alerts.html", alerts=rows, open_form=F.ConfirmForm(),
                           occurred=alert_happened_at(session, rows),
                           reason_form=F.ReasonForm())


def _open_alert(alert_id: int) -> Alert:
    alert = get_session().get(Alert, alert_id)
    if alert is None:
        abort(404)
    return alert


@bp.route("/alerts/<int:alert_id>/open", methods=["POST"])
@roles_required("police")
def open_alert(alert_id: int):
    """Open an incident from an alert (or join the open incident of its group)."""
    session = get_session()
    alert = _open_alert(alert_id)
    if not F.ConfirmForm().validate_on_submit():
        abort(400)
    try:
        incident = W.open_incident_from_alert(session, _settings(), alert, _user())
    except W.WorkflowError as exc:
        session.rollback()
        flash(str(exc), "error")
        return redirect(url_for("incidents.alerts"))
    session.commit()
    flash(_("Cảnh báo đã được chuyển thành sự cố #%(id)s.", id=incident.id), "ok")
    return redirect(url_for("incidents.detail", incident_id=incident.id))


@bp.route("/alerts/<int:alert_id>/dismiss", methods=["POST"])
@roles_required("police")
def dismiss_alert(alert_id: int):
    """Dismiss an alert with a reason (kept in the trail)."""
    session = get_session()
    alert = _open_alert(alert_id)
    form = F.ReasonForm()
    if not form.validate_on_submit():
        flash(_("Cần nhập lý do bác bỏ."), "error")
        return redirect(url_for("incidents.alerts"))
    try:
        W.dismiss_alert(session, alert, _user(), form.reason.data)
    except W.WorkflowError as exc:
        session.rollback()
        flash(str(exc), "error")
        return redirect(url_for("incidents.alerts"))
    session.commit()
    flash(_("Đã bác bỏ cảnh báo."), "ok")
    return redirect(url_for("incidents.alerts"))
