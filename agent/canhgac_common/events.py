"""Event schema v1: what agents and business software send to ``POST /api/v1/events``.

Pure pydantic models, no Flask: the agent, the policy engine, the ingest API and the
OpenAPI document all use these same classes.
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    RootModel,
    Strict,
    StringConstraints,
)

SCHEMA_VERSION = 1

# No NUL characters: PostgreSQL text cannot hold them, so they are refused at the door (400).
NO_NUL = r"^[^\x00]*$"
ShortText = Annotated[str, StringConstraints(max_length=512, pattern=NO_NUL)]
PathText = Annotated[str, StringConstraints(max_length=4096, pattern=NO_NUL)]
Sha256Hex = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
DataClassId = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
PiiKind = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,31}$")]
# Counts and sizes stay within JSON's exact integers (RFC 8785 canonical JSON, JavaScript).
# Strict: JSON integers only — never true, "12" or 12.0, as the OpenAPI document says.
MAX_JSON_INT = 2**53 - 1
Count = Annotated[int, Strict(), Field(ge=0, le=MAX_JSON_INT)]


def _time_as_text(value: object) -> object:
    """Refuse numbers for times: JSON carries an RFC 3339 string (senders in Python may pass
    datetime objects); 1700000000 is not a time."""
    if isinstance(value, int | float):
        raise ValueError("a time is an RFC 3339 string with an offset, not a number")
    return value


def _representable_in_utc(value: datetime) -> datetime:
    """Refuse years 1 and 9999, where a time may not convert to UTC (it is stored in UTC)."""
    if not 2 <= value.year <= 9998:
        raise ValueError("the year must be between 0002 and 9998")
    return value


# An RFC 3339 time with an offset, as text; naive times and numbers are refused.
Timestamp = Annotated[
    AwareDatetime, BeforeValidator(_time_as_text), AfterValidator(_representable_in_utc)
]


class Action(enum.StrEnum):
    """What was done to the object."""

    OPEN = "open"
    READ = "read"
    MODIFY = "modify"
    CREATE = "create"
    DELETE = "delete"
    MOVE = "move"
    COPY = "copy"
    EXPORT = "export"
    PRINT = "print"
    SHARE = "share"
    VIEW = "view"
    LOGIN = "login"
    LOGIN_FAILED = "login_failed"
    LOGOUT = "logout"
    HEARTBEAT = "heartbeat"


class DestinationKind(enum.StrEnum):
    """Where data went, from the point of view of official scope."""

    OFFICIAL = "official"
    REMOVABLE = "removable"
    CLOUD = "cloud"
    MESSAGING = "messaging"
    EMAIL = "email"
    PRINT = "print"
    PUBLISHING = "publishing"
    UNKNOWN = "unknown"


class _Strict(BaseModel):
    # Unknown fields are refused: a typo in a business app must not silently drop data.
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False, frozen=False)


class EventObject(_Strict):
    """The file or record set the event is about."""

    path: PathText | None = None
    sha256: Sha256Hex | None = None
    size: Count | None = None
    record_count: Count | None = None
    data_class: DataClassId | None = None
    content_fingerprint: Sha256Hex | None = Field(
        default=None, description="Hash of the content (e.g. cell values) independent of format"
    )


class Device(_Strict):
    """A removable device's identity, as far as the OS tells it."""

    vendor: ShortText | None = None
    model: ShortText | None = None
    serial: ShortText | None = Field(default=None, description="The device's own serial number")
    fs_uuid: ShortText | None = Field(
        default=None, description="Filesystem UUID or volume serial of the mounted volume"
    )
    is_registered: bool | None = Field(
        default=None,
        description="Set by the server: whether the device is on the commune's register of "
        "official devices; a value sent by a client is replaced",
    )


class Destination(_Strict):
    """Where the object was copied, moved, sent or shared to."""

    path: PathText | None = None
    target: ShortText | None = Field(default=None, description="e-mail address, URL, printer, ...")
    kind: DestinationKind | None = None
    device: Device | None = Field(
        default=None, description="The removable device written to, when the OS tells it"
    )


class Process(_Strict):
    """The program that did it, as the OS tells it."""

    name: Annotated[str, StringConstraints(min_length=1, max_length=255, pattern=NO_NUL)] = Field(
        description="Executable name, e.g. `cp`, `EXCEL.EXE`"
    )
    # Windows process ids are 32-bit unsigned; Linux's fit well below.
    pid: Annotated[int, Strict(), Field(ge=0, le=2**32 - 1)] | None = None
    path: PathText | None = Field(default=None, description="Full path of the executable")


class Event(_Strict):
    """One access to citizen data, as reported by an agent or an application."""

    id: uuid.UUID = Field(description="Client-generated UUID; the idempotency key")
    occurred_at: Timestamp = Field(
        description="RFC 3339 time with offset; years 0002-9998 (it must convert to UTC)",
        json_schema_extra={"pattern": "^(?!0001-|9999-)"},
    )
    host: Annotated[str, StringConstraints(min_length=1, max_length=255, pattern=NO_NUL)]
    actor: Annotated[str, StringConstraints(min_length=1, max_length=255, pattern=NO_NUL)]
    action: Action
    object: EventObject | None = None
    destination: Destination | None = None
    purpose: ShortText | None = None
    pii: dict[PiiKind, Count] = Field(
        default_factory=dict, description="Counts by kind only, never values"
    )
    agent_id: Annotated[str, StringConstraints(max_length=128, pattern=NO_NUL)] | None = None
    seq: Count | None = Field(
        default=None, description="The agent's own event number, to detect gaps"
    )
    unit: Annotated[str, StringConstraints(max_length=64, pattern=NO_NUL)] | None = Field(
        default=None, description="Unit of the actor when the sender knows it"
    )
    process: Process | None = Field(
        default=None, description="The program that did it, when the sender knows it"
    )
    count: Annotated[int, Strict(), Field(ge=1, le=MAX_JSON_INT)] | None = Field(
        default=None,
        description="How many accesses of the same kind by the same program on the same object "
        "this one event stands for (repeated opens within a short window); absent means one",
    )
    schema_version: Literal[1] = 1


class EventBatch(RootModel[list[Event]]):
    """A batch of events, sent as a JSON array."""


def event_to_json_dict(event: Event) -> dict:
    """Return the event as a JSON-ready dict without empty optional fields."""
    return event.model_dump(mode="json", exclude_none=True)


def utc(dt: datetime) -> datetime:
    """Return an aware datetime converted to UTC."""
    from datetime import UTC

    return dt.astimezone(UTC)
