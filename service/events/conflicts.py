"""Event id conflicts: an id already stored, or repeated in a batch, with different content.

An event id names one thing that happened. A retry carries the same id and the same content and
is a duplicate (stored once, counted in ``duplicates``). The same id with other content is not a
retry: taking it as one would silently drop what the second event says, so the batch is refused
and the refusal is written to the trail (kind ``event.conflict``).

Contents are compared as the trail stores them (``event_body``, RFC 8785 canonical JSON) minus
what the server writes into a body: ``source`` (from the token) and the policy's enrichment
(``object.data_class``, ``destination.kind``) and the device register's verdict
(``destination.device.is_registered``), which may differ between a first delivery and a
retry when the policy changed in between. Bodies are read only for ids already stored, so a
batch of new events costs what it cost before.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from sqlalchemy.orm import Session

from canhgac_common.events import Event
from service.audit.canonical import canonical_json
from service.audit.log import event_key, record

# (outer key, inner key or None): the parts of an event body the server writes.
SERVER_WRITTEN = (("source", None), ("object", "data_class"), ("destination", "kind"))
_ID_CHUNK = 900  # stay under SQLite's bound-parameter limit


class EventIdConflict(ValueError):
    """An event reuses an id with different content; ``stored_seq`` is None within one batch."""

    def __init__(self, event_id: str, index: int, stored_seq: int | None, fields: list[str]):
        """Keep what the answer and the trail entry say: the id, where, and which fields differ."""
        where = "already stored" if stored_seq is not None else "repeated earlier in this batch"
        super().__init__(f"event id {event_id} is {where} with different content "
                         f"(fields: {', '.join(fields) or '-'})")
        self.event_id = event_id
        self.index = index
        self.stored_seq = stored_seq
        self.fields = fields

    @property
    def is_within_batch(self) -> bool:
        """Return whether the other event with this id is in the same batch."""
        return self.stored_seq is None


def comparable(body: dict) -> dict:
    """Return an event body without the parts the server writes into it (a shallow copy)."""
    body = dict(body)
    for outer, inner in SERVER_WRITTEN:
        if inner is None:
            body.pop(outer, None)
            continue
        part = body.get(outer)
        if isinstance(part, dict) and inner in part:
            rest = {key: value for key, value in part.items() if key != inner}
            if rest:
                body[outer] = rest
            else:
                body.pop(outer)  # the server may have made the whole part ({"kind": …})
    # The register's verdict on a removable device is the server's too, and may change
    # between a delivery and its retry (a stick registered or revoked meanwhile).
    destination = body.get("destination")
    device = destination.get("device") if isinstance(destination, dict) else None
    if isinstance(device, dict) and "is_registered" in device:
        rest = {key: value for key, value in device.items() if key != "is_registered"}
        destination = {key: value for key, value in destination.items() if key != "device"}
        if rest:
            destination["device"] = rest
        body["destination"] = destination
    return body


def _content(body: dict) -> dict[str, bytes]:
    """Return each top-level field's canonical bytes (the field names say what differs)."""
    return {key: canonical_json(value) for key, value in comparable(body).items()}


def _differing(first: dict[str, bytes], second: dict[str, bytes]) -> list[str]:
    return sorted(key for key in first.keys() | second.keys() if first.get(key) != second.get(key))


def _stored_bodies(session: Session, ids: list[str]) -> dict[str, tuple[int, dict]]:
    """Return {event id: (seq, stored event body)} for the ids already in the trail.

    Looked up by the compact dedupe key (log.event_key) and then compared whole: two ids
    sharing a key are two events. Only entries of kind "event" count (a
    refusal names the event id it refused).
    """
    keys = sorted({event_key(i) for i in ids})
    wanted = set(ids)
    found: dict[str, tuple[int, dict]] = {}
    conn = session.connection()
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    for start in range(0, len(keys), _ID_CHUNK):
        chunk = keys[start:start + _ID_CHUNK]
        # A driver-level statement: the ORM's compiled IN of 900 parameters cost more than
        # the lookup itself. Only placeholders are formatted in (hence S608). The kind is
        # checked here, not in SQL: with "kind = 'event'" SQLite's planner walks the kind
        # index over every event instead of the key index.
        rows = conn.exec_driver_sql(
            "SELECT event_id, seq, kind, body FROM audit_entry WHERE "  # noqa: S608
            f"event_key IN ({', '.join([mark] * len(chunk))})", tuple(chunk))
        for stored_id, seq, kind, entry in rows:
            if kind == "event" and stored_id in wanted:
                found[stored_id] = (seq, json.loads(entry)["body"])
    return found


def check_event_ids(session: Session, events: Sequence[Event],
                    ids: Sequence[str] | None = None) -> set[str]:
    """Return the ids of the batch already stored; raise EventIdConflict at the first conflict.

    ``ids`` are the events' ids as text when the caller has them (formatting a UUID is a
    Python call of its own, paid once per event).
    """
    from service.events.operations import event_body

    if ids is None:
        ids = [str(e.id) for e in events]
    stored = _stored_bodies(session, ids)
    first_in_batch: dict[str, dict[str, bytes] | None] = {}
    for index, (event, key) in enumerate(zip(events, ids, strict=True)):
        if key not in stored and key not in first_in_batch:
            first_in_batch[key] = None  # content computed only if the id comes again
            continue
        content = _content(event_body(event, ""))
        if key in stored:
            seq, body = stored[key]
            fields = _differing(_content(body), content)
            if fields:
                raise EventIdConflict(key, index, seq, fields)
            continue
        if first_in_batch[key] is None:
            first = events[ids.index(key)]
            first_in_batch[key] = _content(event_body(first, ""))
        fields = _differing(first_in_batch[key], content)
        if fields:
            raise EventIdConflict(key, index, None, fields)
    return set(stored)


def record_conflict(session: Session, conflict: EventIdConflict, event: Event, *, source: str,
                    batch_size: int) -> None:
    """Write the refused conflict to the trail: which id, where, and the names of the fields."""
    record(session, "event.conflict", {
        "event_id": conflict.event_id, "source": source, "index": conflict.index,
        "batch_size": batch_size, "stored_seq": conflict.stored_seq,
        "is_within_batch": conflict.is_within_batch, "fields": conflict.fields,
        "agent_id": event.agent_id, "host": event.host,
    }, host=event.host)
