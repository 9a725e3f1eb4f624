"""The API takes exactly what its OpenAPI document says: no numbers for times, no text for counts."""

from __future__ import annotations

import json
import uuid

import pytest

from canhgac_common.events import Event


def _event(**over) -> dict:
    base = {
        "id": str(uuid.uuid4()),
        "occurred_at": "2026-03-02T09:15:00+07:00",
        "host": "PC-CA-01",
        "actor": "ca.hoangvanb",
        "action": "open",
        "object": {"path": "/srv/du-lieu/dan-cu.xlsx", "size": 12},
        "agent_id": "pc-ca-01",
        "seq": 1,
        "pii": {"cccd": 5},
    }
    base.update(over)
    return base


@pytest.fixture
def token(runner):
    result = runner.invoke(["token", "create", "--source", "phan-mem-ho-tich"])
    assert result.exit_code == 0, result.output
    return result.output.strip().splitlines()[-1]


def _post(client, token, path, payload):
    return client.post(path, data=json.dumps(payload), content_type="application/json",
                       headers={"Authorization": f"Bearer {token}"})


LOOSE_EVENTS = [
    ("occurred_at", {"occurred_at": 1700000000}),
    ("occurred_at", {"occurred_at": 1700000000.5}),
    ("occurred_at", {"occurred_at": "2026-03-02T09:15:00"}),  # no offset
    ("seq", {"seq": True}),
    ("seq", {"seq": "12"}),
    ("seq", {"seq": 12.0}),
    ("pii.cccd", {"pii": {"cccd": "5"}}),
    ("pii.cccd", {"pii": {"cccd": 5.0}}),
    ("object.size", {"object": {"size": "12"}}),
    ("count", {"count": "3"}),
    ("process.pid", {"process": {"name": "cp", "pid": "42"}}),
]


@pytest.mark.parametrize(("field", "patch"), LOOSE_EVENTS,
                         ids=[f"{f}={json.dumps(p)}" for f, p in LOOSE_EVENTS])
def test_loose_types_are_refused_naming_the_field(client, token, field, patch):
    response = _post(client, token, "/api/v1/events", [_event(**patch)])
    assert response.status_code == 400, response.get_json()
    answer = response.get_json()
    assert answer["error"] == "invalid_event"
    assert answer["field"] == field
    assert answer["index"] == 0


def test_the_same_event_with_exact_types_is_stored(client, token):
    response = _post(client, token, "/api/v1/events",
                     [_event(count=3, process={"name": "cp", "pid": 42, "path": "/usr/bin/cp"})])
    assert response.status_code == 200, response.get_json()
    assert response.get_json() == {"stored": 1, "duplicates": 0}


@pytest.mark.parametrize("patch", [
    {"sent_at": "2026-03-02T09:15:00"},
    {"sent_at": 1700000000},
    {"last_seq": "3"},
    {"last_seq": True},
    {"spool_depth": 1.0},
    {"protected_roots": "2"},
])
def test_loose_heartbeats_are_refused(client, token, patch):
    beat = {"agent_id": "pc-ca-01", "host": "PC-CA-01", "last_seq": 3,
            "sent_at": "2026-03-02T09:15:00+07:00", **patch}
    response = _post(client, token, "/api/v1/agents/heartbeat", beat)
    assert response.status_code == 400, response.get_json()


def test_python_senders_may_still_pass_datetimes():
    from datetime import UTC, datetime

    event = Event.model_validate(_event(occurred_at=datetime(2026, 3, 2, 2, 15, tzinfo=UTC)))
    assert event.occurred_at.tzinfo is not None


def test_the_openapi_document_says_what_is_enforced(client):
    schemas = client.get("/api/v1/openapi.json").get_json()["components"]["schemas"]
    event = schemas["Event"]["properties"]
    assert event["occurred_at"]["format"] == "date-time"
    seq = next(option for option in event["seq"]["anyOf"] if option.get("type") != "null")
    assert seq["type"] == "integer"
