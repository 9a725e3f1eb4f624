"""Report pages: the month's report (leader, police), PDF/CSV downloads, each unit's part form."""

from __future__ import annotations

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    url_for,
)
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from wtforms import TextAreaField
from wtforms.validators import Length

from service.auth.access import roles_required
from service.auth.models import UNITS
from service.core.db import get_session, utcnow, writing
from service.reports import monthly
from service.reports.models import PART_FIELDS
from service.web.forms import Form

bp = Blueprint("reports", __name__, url_prefix="/reports")
RECENT_MONTHS = 12


class UnitPartForm(Form):
    """A unit's part of the monthly report (plan VII)."""

    done_text = TextAreaField(_l("Việc đã làm"), validators=[Length(max=monthly.MAX_PART_TEXT)])
    not_done_text = TextAreaField(_l("Việc chưa làm"), validators=[Length(max=monthly.MAX_PART_TEXT)])
    difficulties_text = TextAreaField(_l("Khó khăn, vướng mắc"),
                                      validators=[Length(max=monthly.MAX_PART_TEXT)])
    causes_text = TextAreaField(_l("Nguyên nhân"), validators=[Length(max=monthly.MAX_PART_TEXT)])
    proposals_text = TextAreaField(_l("Đề xuất, kiến nghị"),
                                   validators=[Length(max=monthly.MAX_PART_TEXT)])


def _settings():
    return current_app.config["SETTINGS"]


def _checked_month(month: str) -> monthly.Period:
    """Return the period of a month in the URL; 404 for bad or future months."""
    try:
        period = monthly.month_period(month, _settings().timezone, _settings().report_due_day)
    except monthly.ReportError:
        abort(404)
    if period.start_at > utcnow():
        abort(404)
    return period


def _data_class_labels() -> dict[str, str]:
    """Return data class labels from the policy in force ({} when none is loaded)."""
    state = current_app.extensions.get("canhgac.policy_state")
    classes = getattr(getattr(state, "policy", None), "data_classes", None) or {}
    return {key: getattr(spec, "label", key) for key, spec in classes.items()}


def _recent_months() -> list[str]:
    settings = _settings()
    months = [monthly.month_of(utcnow(), settings.timezone)]
    while len(months) < RECENT_MONTHS:
        year, mon = monthly.parse_month(months[-1])
        months.append(f"{year - 1:04d}-12" if mon == 1 else f"{year:04d}-{mon - 1:02d}")
    return months


@bp.route("/")
@roles_required("leader", "police", "official")
def index():
    """List recent months: report links for leader and police, the part form for units."""
    session = get_session()
    rows = []
    for month in _recent_months():
        parts = monthly.parts_for_month(session, month)
        rows.append({"month": month, "label": f"{month[5:]}/{month[:4]}",
                     "filed": len(parts), "late": sum(p.is_late for p in parts.values()),
                     "own": parts.get(current_user.unit or "")})
    can_file = (current_user.unit in monthly.REPORTING_UNITS
                and current_user.has_role("official", "police"))
    return render_template("reports/index.html", rows=rows, can_file=can_file,
                           can_view=current_user.has_role("leader", "police"),
                           units_total=len(monthly.REPORTING_UNITS),
                           unit_label=UNITS.get(current_user.unit or "", ""))


def _build(month: str, fmt: str) -> monthly.MonthlyReport:
    _checked_month(month)
    session = get_session()
    try:
        with writing(session):  # the basis may be signed now, and the output is recorded
            report = monthly.build_monthly_report(session, _settings(), month)
            monthly.record_report_output(session, report, fmt=fmt, by=current_user.username)
            session.commit()
    except monthly.ReportError as exc:
        session.rollback()
        abort(Response(str(exc), status=409, mimetype="text/plain"))
    return report


@bp.route("/<month>")
@roles_required("leader", "police")
def month_view(month: str):
    """Show a month's report with its basis, figures, charts and the units' parts."""
    report = _build(month, "web")
    context = monthly.report_context(report, _settings(), data_class_labels=_data_class_labels())
    return render_template("reports/monthly.html", **context)


@bp.route("/<month>/report.pdf")
@roles_required("leader", "police")
def month_pdf(month: str):
    """Download the report as PDF (BÁO CÁO, Decree 30 layout)."""
    report = _build(month, "pdf")
    data = monthly.render_monthly_pdf(report, _settings(), data_class_labels=_data_class_labels())
    return Response(data, mimetype="application/pdf", headers={
        "Content-Disposition": f"attachment; filename=bao-cao-{report.month}.pdf"})


@bp.route("/<month>/report.csv")
@roles_required("leader", "police")
def month_csv(month: str):
    """Download the report's figures as CSV."""
    report = _build(month, "csv")
    return Response(monthly.monthly_csv(report), mimetype="text/csv", headers={
        "Content-Disposition": f"attachment; filename=bao-cao-{report.month}.csv"})


@bp.route("/<month>/part", methods=["GET", "POST"])
@roles_required("official", "police")
def part_form(month: str):
    """Let a unit's official file or amend the unit's part of a month's report."""
    period = _checked_month(month)
    unit = current_user.unit
    if unit not in monthly.REPORTING_UNITS:
        abort(403)
    session = get_session()
    existing = monthly.parts_for_month(session, month).get(unit)
    form = UnitPartForm(obj=existing)
    if form.validate_on_submit():
        texts = {name: getattr(form, name).data for name in PART_FIELDS}
        try:
            part = monthly.submit_unit_part(session, _settings(), unit=unit, month=month,
                                            texts=texts, by=current_user.username)
        except monthly.ReportError as exc:
            session.rollback()
            flash(_("Không gửi được: %(reason)s", reason=str(exc)), "error")
        else:
            session.commit()
            if part.is_late:
                flash(_("Đã gửi báo cáo của bộ phận (sau hạn, được ghi là gửi muộn)."), "info")
            else:
                flash(_("Đã gửi báo cáo của bộ phận."), "info")
            return redirect(url_for("reports.part_form", month=month))
    return render_template(
        "reports/part_form.html", form=form, part=existing, month=month,
        period_label=period.label, unit_label=UNITS.get(unit, unit), due_at=period.parts_due_at,
        is_overdue=utcnow() >= period.parts_due_at,
    )
