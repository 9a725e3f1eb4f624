"""The police views of the trail work, and reading or exporting the trail is itself audited."""

from __future__ import annotations

import base64
import csv
import io
import json
import zipfile

import pytest
from sqlalchemy import select

from service.audit import log, merkle
from service.audit.bundle import verify_bundle
from service.audit.checkpoint import open_checkpoint
from service.audit.keys import load_verifier_key
from service.audit.models import AuditEntry
from tests.conftest import csrf_token_from


@pytest.fixture
def police(app, session, make_user, login, client):
    """A logged-in police officer and a trail with a few events."""
    make_user("cong_an_1", "police", unit="cong_an")
    log.append_entries(session, [
        log.PendingEntry("event", {"actor": f"canbo{i % 2}", "action": "copy", "i": i},
                         {"actor": f"canbo{i % 2}", "action": "copy",
                          "path": f"C:\\DuLieu\\DanCu\\tep_{i}.xlsx", "data_class": "dan_cu"})
        for i in range(12)
    ])
    session.commit()
    assert login("cong_an_1").status_code == 302
    return client


def _looks(session, kind: str) -> list[dict]:
    session.rollback()
    rows = session.scalars(select(AuditEntry).where(AuditEntry.kind == kind)
                           .order_by(AuditEntry.seq)).all()
    assert all(r.actor == "cong_an_1" for r in rows)
    return [json.loads(r.body)["body"] for r in rows]


def test_search_lists_entries_and_is_audited(police, session):
    page = police.get("/audit/?actor=canbo1")
    assert page.status_code == 200
    assert "Nhật ký kiểm toán" in page.text
    assert "Tìm thấy 6 mục." in page.text
    looks = _looks(session, "audit.viewed")
    assert looks[-1]["what"] == "search" and looks[-1]["filter"] == {"actor": "canbo1"}
    bad = police.get("/audit/?since=hom-qua")
    assert bad.status_code == 200  # a bad filter is explained, not a crash


def test_entry_and_its_proof(police, app, session):
    seq = session.scalars(select(AuditEntry.seq).where(AuditEntry.kind == "event")).first()
    session.rollback()
    page = police.get(f"/audit/entries/{seq}")
    assert page.status_code == 200 and "canbo0" in page.text
    assert police.get("/audit/entries/99999").status_code == 404
    response = police.get(f"/audit/entries/{seq}/proof.json")
    assert response.status_code == 200
    payload = response.get_json()
    settings = app.config["SETTINGS"]
    checkpoint = open_checkpoint(payload["checkpoint"], settings.audit_origin,
                                 [load_verifier_key(settings.keys_dir)])
    body = payload["entry"]["body"].encode()
    proof = [base64.b64decode(p) for p in payload["inclusion_proof"]]
    merkle.verify_inclusion(merkle.leaf_hash(body), seq, checkpoint.size, proof, checkpoint.root)
    looks = _looks(session, "audit.viewed")
    assert [(x["what"], x.get("seq")) for x in looks[-2:]] == [("entry", seq), ("proof", seq)]


def test_csv_export_is_audited(police, session):
    token = csrf_token_from(police, "/audit/")
    response = police.post("/audit/export.csv", data={"csrf_token": token, "actor": "canbo0"})
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True).lstrip("\ufeff"))))
    assert rows[0][:5] == ["Số thứ tự", "Truy cập lúc", "Ghi nhận lúc", "Loại mục", "Người thực hiện"]
    assert len(rows) == 1 + 6
    assert {r[4] for r in rows[1:]} == {"canbo0"}
    assert {(r[3], r[10]) for r in rows[1:]} == {("Truy cập tệp", "event")}
    assert {(r[6], r[7]) for r in rows[1:]} == {("Sao chép", "Dân cư, cư trú, căn cước")}
    exports = _looks(session, "audit.exported")
    assert exports[-1]["format"] == "csv" and exports[-1]["count"] == 6


def test_bundle_export_view_gives_a_verifiable_bundle_and_is_audited(police, session, tmp_path):
    token = csrf_token_from(police, "/audit/")
    response = police.post("/audit/export.zip", data={"csrf_token": token, "actor": "canbo1"})
    assert response.status_code == 200
    assert response.mimetype == "application/zip"
    bundle = tmp_path / "bang-chung.zip"
    bundle.write_bytes(response.data)
    summary = verify_bundle(bundle)
    assert summary.entries == 6 and summary.exported_by == "cong_an_1"
    with zipfile.ZipFile(bundle) as z:
        assert "verify_bundle.py" in z.namelist()
    exports = _looks(session, "audit.exported")
    assert exports[-1]["format"] == "bundle" and exports[-1]["count"] == 6


def test_only_police_read_the_trail(app, make_user, login, client):
    make_user("quan_tri", "admin")
    assert login("quan_tri").status_code == 302
    assert client.get("/audit/").status_code == 403


def _rows(page) -> int:
    return page.text.count('<tr><td data-label="#">')


def test_the_rows_listed_follow_every_filter(police, session):
    # The count above the table is its own query: the rows themselves must be filtered too.
    log.record(session, "incident.reported", {"actor": "cong_an_1", "what": "x"},
               actor="cong_an_1", incident_id=5)
    session.commit()
    by_actor = police.get("/audit/?actor=canbo1")
    assert _rows(by_actor) == 6 and ">canbo1<" in by_actor.text and ">canbo0<" not in by_actor.text
    assert _rows(police.get("/audit/?path_contains=tep_1")) == 3  # tep_1, tep_10, tep_11
    by_incident = police.get("/audit/?incident_id=5")
    assert _rows(by_incident) == 1 and ">canbo" not in by_incident.text
    assert _rows(police.get("/audit/?actor=canbo1&page=2")) == 0


def test_trail_rows_escape_what_agents_wrote(police, session):
    # Search columns come from agents' events: every value is shown as text, never as markup.
    log.append_entries(session, [log.PendingEntry(
        "event", {"actor": "<b>x</b>", "action": "copy"},
        {"actor": "<b>x</b>", "host": '"><script>alert(1)</script>', "action": "<i>copy</i>",
         "data_class": "lop_<la>"})])
    session.commit()
    page = police.get("/audit/").text
    assert "<script>" not in page and "<b>x</b>" not in page and "<i>" not in page
    assert "&#34;&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;b&gt;x&lt;/b&gt;" in page and "&lt;i&gt;copy&lt;/i&gt;" in page
    assert "lop_&lt;la&gt;" in page  # a class the policy does not name is shown by its code


def test_trail_rows_escape_the_policys_names(police, app, session):
    import dataclasses

    state = app.extensions["canhgac.policy_state"]
    before = state.policy
    classes = dict(before.data_classes)
    classes["dan_cu"] = classes["dan_cu"].model_copy(update={"label": 'Hộ "nghèo" <b>&</b>'})
    state.policy = dataclasses.replace(before, data_classes=classes)
    try:
        page = police.get("/audit/?actor=canbo0").text
    finally:
        state.policy = before
    assert '>Hộ &#34;nghèo&#34; &lt;b&gt;&amp;&lt;/b&gt;</td>' in page
    assert "<b>&</b>" not in page
