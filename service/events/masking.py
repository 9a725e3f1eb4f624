"""Mask citizens' identifiers in an event's text fields before it reaches the trail.

Communes name scanned ID cards after the number (``CCCD 001-203-004-567.xlsx``) and write phone
numbers into purposes; the trail is hashed and kept for years, so it must never hold them.
Masking happens once, at ingest and before hashing: the stored body is what is hashed, and the
trail's search columns, the policy's group keys, alerts, incidents, reports and mails are all
built from the masked event. Hashes (``sha256``, ``content_fingerprint``), counts and device
identity are left untouched.
"""

from __future__ import annotations

from canhgac_common.events import Event
from canhgac_common.pii.mask import mask_pii, may_hold_identifier

# Text fields an agent or application fills from paths, names and free text, with the schema's
# length limit: NFKC may lengthen a text ("㎒" is "MHz"), and a masked value must still fit.
EVENT_FIELDS = {"actor": 255, "agent_id": 128, "purpose": 512}
OBJECT_FIELDS = {"path": 4096}
DESTINATION_FIELDS = {"path": 4096, "target": 512}
PROCESS_FIELDS = {"path": 4096}


def _masked_fields(model, limits: dict[str, int]) -> dict:
    changes = {}
    for name, limit in limits.items():
        value = getattr(model, name)
        if value:
            masked = mask_pii(value)
            if masked is not value and masked != value:
                changes[name] = masked[:limit]
    return changes


def _texts(event: Event) -> list[str]:
    texts = [getattr(event, name) or "" for name in EVENT_FIELDS]
    for attr, limits in (("object", OBJECT_FIELDS), ("destination", DESTINATION_FIELDS),
                         ("process", PROCESS_FIELDS)):
        part = getattr(event, attr)
        if part is not None:
            texts.extend(getattr(part, name) or "" for name in limits)
    return texts


def mask_event(event: Event) -> Event:
    """Return the event with identifiers masked in its text fields (the same object if none)."""
    # One digit count over all the fields: most events hold fewer than 9 digits in all.
    if not may_hold_identifier("\n".join(_texts(event))):
        return event
    changes = _masked_fields(event, EVENT_FIELDS)
    for attr, names in (("object", OBJECT_FIELDS), ("destination", DESTINATION_FIELDS),
                        ("process", PROCESS_FIELDS)):
        part = getattr(event, attr)
        if part is not None:
            part_changes = _masked_fields(part, names)
            if part_changes:
                changes[attr] = part.model_copy(update=part_changes)
    return event.model_copy(update=changes) if changes else event


def mask_agent_id(agent_id: str) -> str:
    """Return an agent id as the trail and the agents table keep it (identifiers masked)."""
    return mask_pii(agent_id)[: EVENT_FIELDS["agent_id"]]
