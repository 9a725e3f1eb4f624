"""Windowed rules count the events every process appends to the trail, not one process's share.

Each app below stands for one process (an HTTP worker, the CLI, a second instance): its own
PolicyProcessor and window counters, on the same database. The rule used is the default
policy's ``xuat_in_hang_loat``: 1,000 exported records of one class by one official on one
machine within an hour raise an alert. Every batch here exports 400 records, so two batches
stay below the threshold and the third crosses it.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from canhgac_common.events import Event
from service import create_app
from service.audit import log
from service.config import load_settings
from service.core.db import new_session
from service.events.operations import ingest_events
from service.events.processing import PolicyProcessor
from service.incidents.models import Alert

RULE = "xuat_in_hang_loat"
RECORDS = 400  # per export; the rule's threshold is 1,000 records


def _export(minutes_ago: int, *, actor: str = "ca.a", records: int = RECORDS) -> Event:
    return Event.model_validate({
        "id": str(uuid.uuid4()),
        "occurred_at": (datetime.now(UTC) - timedelta(minutes=minutes_ago)).isoformat(),
        "host": "PC-CA-01", "actor": actor, "unit": "cong_an", "action": "export",
        "object": {"path": f"C:\\DuLieu\\DanCu\\xuat_{uuid.uuid4().hex[:8]}.xlsx",
                   "record_count": records}})


def _ingest(app, *events: Event) -> list[int]:
    """Ingest one batch through the app's own processor, commit; return the entries' seqs."""
    with app.app_context():
        s = new_session(app)
        try:
            result = ingest_events(s, list(events), source="t",
                                   processor=app.extensions["canhgac.processor"])
            s.commit()
        finally:
            s.close()
    return result.entry_seqs


def _rule_alert_seqs(app) -> list[int]:
    with app.app_context():
        s = new_session(app)
        try:
            return list(s.scalars(select(Alert.entry_seq).where(Alert.rule_id == RULE)
                                  .order_by(Alert.id)))
        finally:
            s.close()


def _record_other_entry(app) -> None:
    """Append a trail entry that is not an event (as alerts, logins and reports are)."""
    with app.app_context():
        s = new_session(app)
        try:
            log.record(s, "test.note", {"note": "not an event"})
            s.commit()
        finally:
            s.close()


@pytest.fixture
def other_process(app, settings_overrides):
    """Return a factory of apps on the same database and data directory (other processes)."""
    made = []

    def make(*, start: bool = True):
        other = create_app(load_settings({**settings_overrides, "policy_reload": False}, environ={}))
        if start:
            other.extensions["canhgac.processor"].start()
        made.append(other)
        return other

    yield make
    for other in made:
        other.extensions["canhgac.engine"].dispose()


@pytest.mark.parametrize("crossing_in", ["first", "second"])
def test_the_rule_fires_on_the_combined_count_in_the_app_that_crosses_it(app, other_process,
                                                                       crossing_in):
    app.extensions["canhgac.processor"].start()
    second = other_process()
    # The app that ingests the first and third batch also ingests the crossing one.
    crosser, other = (app, second) if crossing_in == "first" else (second, app)
    _ingest(crosser, _export(30))
    _ingest(other, _export(20))
    assert _rule_alert_seqs(app) == []  # 800 records together: below the threshold
    crossing = _ingest(crosser, _export(10))
    # The crosser itself holds 800 records, the other 400: only the combined 1,200 fire.
    assert _rule_alert_seqs(app) == crossing
    assert _rule_alert_seqs(second) == crossing


def test_without_the_catch_up_each_app_sees_its_share_only(app, other_process, monkeypatch):
    """The counterfactual of the test above: the split 800 + 400 never fires."""
    monkeypatch.setattr(PolicyProcessor, "_catch_up", lambda self, session, policy, before_seq: 0)
    app.extensions["canhgac.processor"].start()
    second = other_process()
    _ingest(app, _export(30))
    _ingest(second, _export(20))
    _ingest(app, _export(10))
    assert _rule_alert_seqs(app) == []


def test_a_cli_ingest_between_two_batches_is_caught_up(app, other_process):
    processor = app.extensions["canhgac.processor"]
    processor.start()
    first = _ingest(app, _export(40))
    # A CLI process: a fresh app never started (no warm-up), ingesting one batch and exiting.
    cli = other_process(start=False)
    cli_seqs = _ingest(cli, _export(30))
    assert cli.extensions["canhgac.processor"]._seen_seq == cli_seqs[-1]
    _record_other_entry(cli)
    assert processor._seen_seq == first[-1]
    crossing = _ingest(app, _export(20))
    assert _rule_alert_seqs(app) == crossing
    assert processor._seen_seq == crossing[-1]


def test_own_batches_are_not_fed_again(app, other_process):
    processor = app.extensions["canhgac.processor"]
    processor.start()
    second = other_process()
    _ingest(app, _export(40))
    _record_other_entry(second)  # entries between the batches: the catch-up range is not empty
    _record_other_entry(app)
    # 800 records; with the first batch fed again by the catch-up it would be 1,200 and fire.
    second_batch = _ingest(app, _export(30))
    assert _rule_alert_seqs(app) == []
    assert processor._seen_seq == second_batch[-1]
    crossing = _ingest(second, _export(20))  # the other app catches up both: 1,200
    assert _rule_alert_seqs(app) == crossing


def test_an_app_never_warmed_up_catches_up_after_its_first_batch(app, other_process):
    """Without warm_up the first batch is judged as before; the batches after it catch up."""
    processor = app.extensions["canhgac.processor"]
    _ingest(other_process(), _export(40, records=700))
    assert processor._seen_seq is None
    first = _ingest(app, _export(30))  # 1,100 with the 700 before it: not caught up, as before
    assert _rule_alert_seqs(app) == []
    assert processor._seen_seq == first[-1]
    _ingest(other_process(start=False), _export(20, records=300))
    crossing = _ingest(app, _export(10))  # 400 + 300 + 400: the 300 were caught up
    assert _rule_alert_seqs(app) == crossing


def test_warm_up_accounts_for_the_whole_trail_up_to_its_last_entry(app, other_process):
    _ingest(app, _export(30))
    _record_other_entry(app)  # the trail's last entry is not an event
    fresh = other_process(start=False)
    processor = fresh.extensions["canhgac.processor"]
    with fresh.app_context():
        s = new_session(fresh)
        try:
            assert processor.warm_up(s) == 1
            assert processor._seen_seq == log.tree_size(s) - 1
        finally:
            s.close()


def test_events_no_windowed_rule_counts_are_not_read_back(app, other_process, monkeypatch):
    """Opens (most of what agents send) move no window: the catch-up leaves them in the trail."""
    from service.events import processing

    policy = app.extensions["canhgac.processor"].state.policy
    assert "export" in policy.windowed_actions and "open" not in policy.windowed_actions
    app.extensions["canhgac.processor"].start()
    second = other_process()
    opened = Event.model_validate({**_export(30).model_dump(mode="json"), "action": "open"})
    _ingest(second, opened, _export(25))
    read_back: list[str] = []
    decode = processing.stored_event

    def counting(body):
        event = decode(body)
        read_back.append(str(event.action))
        return event

    monkeypatch.setattr(processing, "stored_event", counting)
    _ingest(app, _export(20))
    assert read_back == ["export"]
