"""JSON API v1: event ingest, agent heartbeats and the OpenAPI document."""

from __future__ import annotations

import json

from flask import Blueprint, Flask, current_app, g, jsonify, request
from pydantic import BaseModel, Field, TypeAdapter, ValidationError
from sqlalchemy.exc import DBAPIError, PendingRollbackError

from canhgac_common.events import NO_NUL, Count, Event, Timestamp
from service.auth.access import public, token_required
from service.auth.operations import find_token, note_token_use
from service.core.db import get_session, reading
from service.events import operations
from service.events.conflicts import EventIdConflict, record_conflict

bp = Blueprint("api", __name__, url_prefix="/api/v1")
_batch_adapter = TypeAdapter(list[Event] | Event)
MAX_JSON_DEPTH = 32


class Heartbeat(BaseModel):
    """An agent's periodic sign of life."""

    model_config = {"extra": "forbid"}

    agent_id: str = Field(min_length=1, max_length=128, pattern=NO_NUL)
    host: str = Field(min_length=1, max_length=255, pattern=NO_NUL)
    last_seq: Count | None = None
    spool_depth: Count | None = None
    version: str | None = Field(default=None, max_length=32, pattern=NO_NUL)
    config_hash: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$", description=(
        "SHA-256 of what the agent watches (roots, ignore patterns, scan limits); a change "
        "raises an alert"))
    # Stored in a 32-bit column: a larger count is refused here (400), not by the database (503).
    protected_roots: int | None = Field(default=None, strict=True, ge=0, le=2**31 - 1, description=(
        "how many protected folders the agent watches"))
    access_mode: str | None = Field(default=None, pattern=r"^[a-z][a-z0-9-]{0,31}$", description=(
        "how the agent watches opens of protected files: `fanotify-perm` or `fanotify` (user and "
        "program known), `inotify` (opens without the user or program), `security-log` "
        "(Windows), `off`"))
    # The schema says what the validator refuses (years 0001 and 9999), as for occurred_at.
    sent_at: Timestamp | None = Field(
        default=None, description="RFC 3339 time with offset; years 0002-9998",
        json_schema_extra={"pattern": "^(?!0001-|9999-)"})


class IngestAnswer(BaseModel):
    """The answer to an accepted batch."""

    stored: int
    duplicates: int


class ErrorAnswer(BaseModel):
    """The answer to a refused request."""

    error: str
    detail: str | None = None
    index: int | None = None
    field: str | None = None
    event_id: str | None = Field(default=None, description=(
        "id of the refused event: `host_mismatch`, and `id_conflict` (409 when already stored "
        "with other content, 400 when repeated in the batch with other content)"))
    status: int | None = Field(default=None, description="HTTP status, in generic answers (405, 413)")


def _error(status: int, error: str, **extra):
    body = {"error": error, **{k: v for k, v in extra.items() if v is not None}}
    return jsonify(body), status


def _authenticate():
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    session = get_session()
    # Looked up in a read transaction (SQLite): the write lock, which every writer of every
    # server process waits for, is taken only when the events are stored (bench/README.md).
    with reading(session):
        row = find_token(session, token.strip())
    if row is None or not row.can_ingest:
        return None  # a monitor token reads the trail; it never writes events
    note_token_use(row)  # written with the events, in their transaction
    return row


def _depth(value, limit: int) -> int:
    stack = [(value, 1)]
    deepest = 0
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest > limit:
            return deepest
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return deepest


def _parse_json(raw: bytes | None = None):
    if raw is None:
        raw = request.get_data(cache=False)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None, _error(400, "invalid_utf8", detail="body is not valid UTF-8")
    try:
        payload = json.loads(text)
    except RecursionError:
        return None, _error(400, "too_deep", detail=f"JSON nested deeper than {MAX_JSON_DEPTH}")
    except json.JSONDecodeError as exc:
        # The decoder's own words name a position in the body, nothing of the server.
        return None, _error(400, "invalid_json", detail=f"{exc.msg} at line {exc.lineno} column {exc.colno}")
    except ValueError:
        # Python refuses to convert integers longer than sys.get_int_max_str_digits(); its
        # message names interpreter settings, so say what is wrong in the body instead.
        return None, _error(400, "invalid_json", detail="a number in the body has too many digits")
    if _depth(payload, MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
        return None, _error(400, "too_deep", detail=f"JSON nested deeper than {MAX_JSON_DEPTH}")
    return payload, None


def _field_of(err: dict) -> tuple[int | None, str]:
    loc = list(err.get("loc", ()))
    # The union adapter prefixes the branch name; drop it so the location reads naturally.
    if loc and loc[0] in ("list[Event]", "Event"):
        loc = loc[1:]
    index = loc.pop(0) if loc and isinstance(loc[0], int) else None
    return index, ".".join(str(p) for p in loc)


def _validate_whole_body(raw: bytes) -> list[Event] | None:
    """Return the events of a valid body, validated from its bytes in one call; None otherwise.

    pydantic-core parses and validates the raw JSON at once, without a Python object tree
    (and without the depth walk: a valid batch is never deep). Anything it refuses (bad
    UTF-8 or JSON, too deep, an invalid event) returns None, and the request takes the
    step-by-step path, whose answers say what is wrong exactly as before.
    """
    try:
        parsed = _batch_adapter.validate_json(raw)
    except (ValidationError, ValueError, RecursionError):
        return None
    return parsed if isinstance(parsed, list) else [parsed]


@bp.route("/events", methods=["POST"])
@token_required
def ingest():
    """Store one event or a batch durably in the trail, then answer."""
    raw = request.get_data(cache=False)
    # Validated before the first database statement: on SQLite that statement takes the
    # write lock, which every other writer then waits for. Only for requests that present a
    # bearer token at all, so anonymous bodies cost no parsing.
    has_bearer = request.headers.get("Authorization", "")[:7].lower() == "bearer "
    events = _validate_whole_body(raw) if has_bearer else None
    token = _authenticate()
    if token is None:
        return _error(401, "unauthorized", detail="missing or invalid bearer token")
    settings = current_app.config["SETTINGS"]
    if events is not None:
        if len(events) > settings.max_batch_events:
            return _error(413, "batch_too_large", detail=f"at most {settings.max_batch_events} events")
        if not events:
            return jsonify(stored=0, duplicates=0)
        return _store(events, token.source)
    payload, problem = _parse_json(raw)
    if problem:
        return problem
    items = payload if isinstance(payload, list) else [payload]
    if len(items) > settings.max_batch_events:
        return _error(413, "batch_too_large", detail=f"at most {settings.max_batch_events} events")
    if not items:
        return jsonify(stored=0, duplicates=0)
    try:
        parsed = _batch_adapter.validate_python(payload)
    except ValidationError as exc:
        err = _pick_error(exc, isinstance(payload, list))
        index, field = _field_of(err)
        return _error(400, "invalid_event", index=index if index is not None else 0,
                      field=field or None, detail=err.get("msg"))
    return _store(parsed if isinstance(parsed, list) else [parsed], token.source)


def _store(events: list[Event], source: str):
    """Ingest validated events in the request's transaction, commit, and answer."""
    session = get_session()
    try:
        result = operations.ingest_events(
            session, events, source=source,
            processor=current_app.extensions.get("canhgac.processor"),
        )
    except operations.AgentSourceError as exc:
        session.rollback()
        return _error(403, "forbidden", detail=str(exc))
    except operations.AgentIdentityRefused as exc:
        return _refuse(session, exc)
    except EventIdConflict as exc:
        # Nothing of the batch is stored; the refusal itself goes to the trail.
        session.rollback()
        record_conflict(session, exc, events[exc.index], source=source, batch_size=len(events))
        session.commit()
        return _error(400 if exc.is_within_batch else 409, "id_conflict", index=exc.index,
                      field="id", event_id=exc.event_id, detail=str(exc))
    session.commit()
    g.ingested = result
    return jsonify(stored=result.stored, duplicates=result.duplicates)


def _pick_error(exc: ValidationError, is_list: bool) -> dict:
    errors = exc.errors(include_url=False)
    wanted = "list[Event]" if is_list else "Event"
    for err in errors:
        if err.get("loc") and err["loc"][0] == wanted:
            return err
    return errors[0]


@bp.route("/agents/heartbeat", methods=["POST"])
@token_required
def heartbeat():
    """Record an agent's heartbeat."""
    token = _authenticate()
    if token is None:
        return _error(401, "unauthorized", detail="missing or invalid bearer token")
    payload, problem = _parse_json()
    if problem:
        return problem
    try:
        beat = Heartbeat.model_validate(payload)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        return _error(400, "invalid_heartbeat", field=".".join(map(str, err["loc"])) or None,
                      detail=err["msg"])
    session = get_session()
    try:
        operations.record_heartbeat(session, source=token.source, agent_id=beat.agent_id,
                                    host=beat.host, last_seq=beat.last_seq,
                                    spool_depth=beat.spool_depth, version=beat.version,
                                    config_hash=beat.config_hash,
                                    protected_roots=beat.protected_roots,
                                    access_mode=beat.access_mode)
    except operations.AgentSourceError as exc:
        session.rollback()
        return _error(403, "forbidden", detail=str(exc))
    except operations.AgentIdentityRefused as exc:
        return _refuse(session, exc)
    session.commit()
    return jsonify(status="ok")


def _refuse(session, refusal: operations.AgentIdentityRefused):
    # Nothing of the request is kept; the refusal itself is, in a transaction of its own. The
    # answer names the problem and the client's own event, never what the other agent is.
    session.rollback()
    operations.record_refusal(session, refusal)
    session.commit()
    return _error(refusal.status, refusal.error, detail=refusal.detail, index=refusal.index,
                  field="host" if refusal.error == "host_mismatch" else "agent_id",
                  event_id=refusal.event_id)


@bp.route("/openapi.json")
@public
def openapi():
    """Serve the OpenAPI 3 document generated from the pydantic models."""
    from service.events.openapi import build_openapi

    return jsonify(build_openapi())


@bp.errorhandler(DBAPIError)
@bp.errorhandler(PendingRollbackError)
def _storage_unavailable(exc):
    # Database down, restarting (a connection cut mid-statement surfaces as an interface
    # error, or as a session left to roll back), locked too long or disk full: tell clients
    # to retry in the API's own words; nothing was stored.
    from service.core.db import get_session, rollback_quietly

    rollback_quietly(get_session())
    cause = getattr(exc, "orig", None) or exc
    response, status = _error(503, "storage_unavailable", detail=type(cause).__name__)
    response.headers["Retry-After"] = "5"
    return response, status


def init_app(app: Flask) -> None:
    """Register the API; it authenticates by token, so CSRF does not apply."""
    from service.web.wiring import csrf

    csrf.exempt(bp)
    app.register_blueprint(bp)
