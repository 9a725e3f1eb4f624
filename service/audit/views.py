"""Police views of the trail: search, entry detail, proofs, CSV and bundle export (all audited)."""

from __future__ import annotations

import base64
import io
import json
import tempfile
from pathlib import Path
from zoneinfo import ZoneInfo

from flask import (
    Blueprint,
    Response,
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
from flask_login import current_user
from markupsafe import Markup, escape
from sqlalchemy import func, select

from canhgac_common.pii.mask import mask_pii
from service.audit import log
from service.audit.models import AuditEntry
from service.audit.operations import latest_checkpoint, sign_checkpoint
from service.audit.search import SearchFilter, search_query
from service.auth.access import roles_required
from service.core.csvfile import SafeCSV
from service.core.db import get_session, utcnow, writing
from service.web.labels import label
from service.web.wiring import local_time

bp = Blueprint("audit", __name__, url_prefix="/audit")
PAGE_SIZE = 50
FILTER_FIELDS = ("since", "until", "actor", "host", "path_contains", "data_class", "action",
                 "incident_id", "kind")


def _filter_from_request() -> SearchFilter:
    raw = {name: request.values.get(name) for name in FILTER_FIELDS}
    try:
        flt = SearchFilter.from_strings(current_app.config["SETTINGS"].timezone, **raw)
    except ValueError as exc:
        flash(str(exc), "error")
        return SearchFilter()
    return flt.with_matches(get_session())


def _masked(value: str | None) -> str | None:
    """Mask identifiers in a search column (entries stored before ingest masked them)."""
    return None if value is None else mask_pii(value)


def _record_look(what: str, **details) -> None:
    log.record(get_session(), "audit.viewed",
               {"actor": current_user.username, "what": what, **details},
               actor=current_user.username)


# What a trail page shows of each entry: reading whole entries (bodies, hashes) into ORM
# objects cost more than the page's own query.
PAGE_COLUMNS = (AuditEntry.seq, AuditEntry.recorded_at, AuditEntry.occurred_at, AuditEntry.kind,
                AuditEntry.actor, AuditEntry.host, AuditEntry.action, AuditEntry.data_class)


def trail_table(entries) -> tuple[list[str], Markup]:
    """Return the trail table's column names and its rows as escaped HTML.

    Each time is formatted once, each code's name looked up once per page, each value escaped
    here: the template's loop made some 30 outputs and 15 lookups of names, links and masks per
    row, a third of the page's CPU under load (bench/README.md, issue 18).
    """
    zone = ZoneInfo(current_app.config["SETTINGS"].timezone)
    entry_url = escape(url_for("audit.entry", seq=0)[:-1])  # ".../entries/" + seq
    columns = [_("Thời gian"), _("Loại mục"), _("Người thực hiện"), _("Máy"), _("Hành động"),
               _("Loại dữ liệu")]
    h_time, h_kind, h_actor, h_host, h_action, h_class = (escape(c) for c in columns)
    recorded_line = Markup('<br><span class="muted">{}</span>').format(_("ghi nhận lúc %(t)s"))
    names: dict[tuple[str, str | None], Markup] = {}

    def name(code: str | None, table: str) -> Markup:
        found = names.get((table, code))
        if found is None:
            found = names[(table, code)] = escape(label(code, table))
        return found

    rows = []
    for e in entries:
        recorded = local_time(e.recorded_at, True, zone=zone)
        happened = local_time(e.occurred_at, True, zone=zone) if e.occurred_at else recorded
        # The recording time is said when it is another minute than the access.
        also = recorded_line % {"t": recorded} if recorded[:16] != happened[:16] else ""
        rows.append(
            f'<tr><td data-label="#"><a href="{entry_url}{e.seq}">{e.seq}</a></td>\n'
            f'<td data-label="{h_time}"><span>{happened}{also}</span></td>\n'
            f'<td data-label="{h_kind}">{name(e.kind, "entry_kind")}</td>\n'
            f'<td data-label="{h_actor}">{escape(_masked(e.actor) or "")}</td>\n'
            f'<td data-label="{h_host}">{escape(_masked(e.host) or "")}</td>\n'
            f'<td data-label="{h_action}">{name(e.action, "action") if e.action else ""}</td>\n'
            f'<td data-label="{h_class}">{name(e.data_class, "data_class") if e.data_class else ""}'
            "</td></tr>\n")
    # Safe: every value above is escaped, a number or a time formatted from digits.
    return columns, Markup("".join(rows))  # noqa: S704


@bp.route("/")
@roles_required("police")
def search():
    """Search the trail."""
    flt = _filter_from_request()
    # Bounded: a huge page number would overflow the database's OFFSET (a 500, not a page).
    page = min(max(request.args.get("page", 1, type=int) or 1, 1), 1_000_000)
    session = get_session()
    # Unfiltered, the count is the tree size (entries 0..size-1, never deleted): one row read
    # instead of counting the whole trail on every look.
    total = (log.tree_size(session) if flt == SearchFilter() else
             session.scalar(flt.apply(select(func.count()).select_from(AuditEntry))))
    query = search_query(flt).with_only_columns(*PAGE_COLUMNS)
    columns, rows = trail_table(session.execute(query.limit(PAGE_SIZE).offset((page - 1) * PAGE_SIZE)))
    with writing(session):  # GET pages read first; the look itself is a write
        _record_look("search", filter=flt.describe(), page=page)
        session.commit()
    return render_template(
        "audit/search.html", columns=columns, rows=rows, total=total, page=page, page_size=PAGE_SIZE,
        filters={k: request.args.get(k, "") for k in FILTER_FIELDS},
        checkpoint=latest_checkpoint(session), size=log.tree_size(session),
    )


@bp.route("/entries/<int:seq>")
@roles_required("police")
def entry(seq: int):
    """Show one entry with its body and inclusion proof."""
    session = get_session()
    row = session.get(AuditEntry, seq)
    if row is None:
        abort(404)
    with writing(session):  # GET pages read first; the look itself is a write
        _record_look("entry", seq=seq)
        session.commit()
    body = json.dumps(json.loads(row.body), ensure_ascii=False, indent=2)
    return render_template("audit/entry.html", entry=row, body=body,
                           checkpoint=latest_checkpoint(session))


@bp.route("/entries/<int:seq>/proof.json")
@roles_required("police")
def entry_proof(seq: int):
    """Download the entry, its inclusion proof and the latest signed checkpoint."""
    session = get_session()
    row = session.get(AuditEntry, seq)
    if row is None:
        abort(404)
    with writing(session):
        cp = sign_checkpoint(session, current_app.config["SETTINGS"])
        if cp.size <= seq:
            abort(409)
        proof = log.inclusion_proof(session, seq, cp.size)
        _record_look("proof", seq=seq, tree_size=cp.size)
        session.commit()
    payload = {
        "entry": {"seq": seq, "body": row.body,
                  "leaf_hash": base64.b64encode(row.leaf_hash).decode()},
        "tree_size": cp.size,
        "inclusion_proof": [base64.b64encode(h).decode() for h in proof],
        "checkpoint": cp.note,
    }
    return Response(json.dumps(payload, ensure_ascii=False, indent=2), mimetype="application/json",
                    headers={"Content-Disposition": f"attachment; filename=entry-{seq}-proof.json"})


@bp.route("/export.csv", methods=["POST"])
@roles_required("police")
def export_csv():
    """Export the matching entries as CSV (audited)."""
    flt = _filter_from_request()
    session = get_session()
    writer = SafeCSV()
    # Headers and values people read (labels.py); the codes stay beside them for tools, and the
    # times are local with their offset, the access first.
    writer.row([_("Số thứ tự"), _("Truy cập lúc"), _("Ghi nhận lúc"), _("Loại mục"),
                _("Người thực hiện"), _("Máy"), _("Hành động"), _("Loại dữ liệu"), _("Đường dẫn"),
                _("Sự cố số"), _("Mã loại mục"), _("Mã hành động"), _("Mã loại dữ liệu"),
                _("Mã băm lá (base64)")])
    zone = ZoneInfo(current_app.config["SETTINGS"].timezone)
    count = 0
    for row in session.scalars(search_query(flt).limit(100_000)):
        writer.row([row.seq,
                    row.occurred_at.astimezone(zone).isoformat() if row.occurred_at else "",
                    row.recorded_at.astimezone(zone).isoformat(), label(row.kind, "entry_kind"),
                    _masked(row.actor), _masked(row.host),
                    label(row.action, "action") if row.action else "",
                    label(row.data_class, "data_class") if row.data_class else "",
                    _masked(row.path), row.incident_id, row.kind, row.action, row.data_class,
                    base64.b64encode(row.leaf_hash).decode()])
        count += 1
    log.record(session, "audit.exported",
               {"actor": current_user.username, "format": "csv", "filter": flt.describe(),
                "count": count}, actor=current_user.username)
    session.commit()
    return Response(writer.text(), mimetype="text/csv",
                    headers={"Content-Disposition": "attachment; filename=nhat-ky.csv"})


@bp.route("/export.zip", methods=["POST"])
@roles_required("police")
def export_bundle_view():
    """Export the matching entries as an evidence bundle (audited)."""
    from service.audit.bundle import bundle_filename, export_bundle

    flt = _filter_from_request()
    session = get_session()
    with tempfile.TemporaryDirectory(prefix="canhgac-export-") as tmpdir:
        tmp = Path(tmpdir) / "bang-chung.zip"
        count = export_bundle(session, current_app.config["SETTINGS"], flt, tmp,
                              by=current_user.username)
        data = tmp.read_bytes()
    session.commit()
    if count == 0:
        flash(_("Không có mục nào khớp bộ lọc."), "info")
        return redirect(url_for("audit.search", **{k: v for k, v in request.form.items()
                                                   if k in FILTER_FIELDS}))
    name = bundle_filename(current_app.config["SETTINGS"], flt.incident_id, utcnow())
    return send_file(io.BytesIO(data), mimetype="application/zip", as_attachment=True,
                     download_name=name)


MAX_KEPT_BYTES = 2 * 1024 * 1024  # a saved mail with its checkpoint; attachments are not read


@bp.route("/kept-checkpoint", methods=["GET", "POST"])
@roles_required("police")
def kept_checkpoint():
    """Check a checkpoint pasted from a mail (or the saved mail) against today's trail."""
    from service.audit.monitor import check_kept_checkpoint

    verdict = None
    status = 200
    if request.method == "POST":
        upload = request.files.get("mail")
        text = request.form.get("note", "")
        if upload is not None and upload.filename:
            raw = upload.read(MAX_KEPT_BYTES + 1)
            if len(raw) > MAX_KEPT_BYTES:
                raw = b""
            text = raw.decode("utf-8", "replace")
        if not text.strip():
            flash(_("Hãy dán checkpoint hoặc chọn tệp thư (.eml)."), "error")
            status = 400
        else:
            session = get_session()
            verdict = check_kept_checkpoint(session, current_app.config["SETTINGS"], text)
            _record_look("kept_checkpoint", kept_size=verdict.kept_size,
                         is_extended=verdict.is_extended)
            session.commit()
    return render_template("audit/kept_checkpoint.html", verdict=verdict), status
