"""The trail over C2SP tlog-tiles (``/tlog/``) and the witness endpoint (``/witness/``).

Who may read (issue #17): the checkpoint and the hash tiles with any valid token (``monitor``
for witnesses and the province, ``ingest`` for agents) or a police session; entry bundles only
with a monitor token or a police session, and every such read is written to the trail like
other trail reads. ``POST /witness/add-checkpoint`` needs no authentication (C2SP
tlog-witness): the log's signature on the checkpoint is what counts.
"""

from __future__ import annotations

import gzip

from flask import Blueprint, Flask, Response, current_app, request
from flask_login import current_user

from service.audit import log, tiles
from service.audit.operations import latest_checkpoint, served_note
from service.auth.access import public, token_or_roles
from service.auth.models import TOKEN_SCOPE_MONITOR
from service.auth.operations import find_token, note_token_use
from service.core.db import get_session, writing

bp = Blueprint("tlog", __name__, url_prefix="/tlog")
witness_bp = Blueprint("witness", __name__, url_prefix="/witness")

FULL_TILE_CACHE = "private, max-age=31536000, immutable"
# A partial tile's bytes never change either, but the full tile replaces it: keep it short.
PARTIAL_TILE_CACHE = "private, max-age=60"
CHECKPOINT_CACHE = "private, max-age=5"


def _text(status: int, message: str, **headers) -> Response:
    return Response(message + "\n", status=status, mimetype="text/plain",
                    headers={"Cache-Control": "no-store", **headers})


def _reader() -> tuple[str, str] | None:
    """Return (who, scope) for a bearer token or a police session; None when neither."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        row = find_token(get_session(), token.strip())
        if row is None:
            return None
        # A monitor fetches hundreds of tiles in a row: one durable write a minute, not one a tile.
        note_token_use(row)
        return f"token:{row.source}", row.scope
    if current_user.is_authenticated and current_user.has_role("police"):
        return current_user.username, "police"
    return None


def _unauthorized() -> Response:
    get_session().rollback()
    return _text(401, "missing or invalid bearer token", **{"WWW-Authenticate": "Bearer"})


@bp.route("/checkpoint")
@token_or_roles("police")
def checkpoint():
    """Serve the latest signed checkpoint with the witnesses' cosignatures."""
    if _reader() is None:
        return _unauthorized()
    session = get_session()
    cp = latest_checkpoint(session)
    if cp is None:
        session.commit()
        return _text(404, "no checkpoint signed yet")
    note = served_note(session, cp)
    session.commit()
    return Response(note, mimetype="text/plain", content_type="text/plain; charset=utf-8",
                    headers={"Cache-Control": CHECKPOINT_CACHE})


@bp.route("/tile/<path:tile_path>")
@token_or_roles("police")
def tile(tile_path: str):
    """Serve a hash tile or an entry bundle (entry bundles: monitor token or police)."""
    reader = _reader()
    if reader is None:
        return _unauthorized()
    session = get_session()
    try:
        ref = tiles.parse_tile_path(tile_path)
    except tiles.TilePathError as exc:
        session.commit()
        return _text(404, str(exc))
    who, scope = reader
    if ref.level is None and scope not in (TOKEN_SCOPE_MONITOR, "police"):
        session.rollback()
        return _text(403, "entry bundles need a monitor token or a police session")
    cp = latest_checkpoint(session)
    signed = cp.size if cp is not None else 0
    if ref.leaves_needed() > signed:
        session.commit()
        return _text(404, "no such tile in the signed tree")
    if ref.level is None:
        try:
            data = tiles.entry_bundle(session, ref)
        except ValueError as exc:
            session.rollback()
            return _text(500, str(exc))
        first = ref.index * tiles.TILE_WIDTH
        with writing(session):  # the bundle was read in the GET's read transaction
            log.record(session, "audit.viewed",
                       {"actor": who, "what": "tlog_entries", "first_seq": first,
                        "count": ref.width}, actor=who)
            session.commit()
    else:
        data = tiles.tile_hashes(session, ref)
    session.commit()
    headers = {"Cache-Control": PARTIAL_TILE_CACHE if ref.is_partial else FULL_TILE_CACHE}
    if ref.level is None and "gzip" in request.headers.get("Accept-Encoding", ""):
        data = gzip.compress(data, compresslevel=6, mtime=0)
        headers["Content-Encoding"] = "gzip"
        headers["Vary"] = "Accept-Encoding"
    return Response(data, mimetype="application/octet-stream", headers=headers)


@witness_bp.route("/add-checkpoint", methods=["POST"])
@public
def add_checkpoint():
    """Cosign another log's checkpoint if it is consistent with the last one cosigned."""
    from service.audit.witness import WitnessRefusal
    from service.audit.witness import add_checkpoint as witness_add

    session = get_session()
    settings = current_app.config["SETTINGS"]
    try:
        lines = witness_add(session, settings, request.get_data(cache=False))
    except WitnessRefusal as exc:
        session.commit()  # the refusal's trail entry, when there is one (422)
        if exc.status == 409:
            return Response(f"{exc.size}\n", status=409, content_type="text/x.tlog.size",
                            headers={"Cache-Control": "no-store"})
        return _text(exc.status, exc.message)
    session.commit()
    return Response("".join(line + "\n" for line in lines), mimetype="text/plain",
                    content_type="text/plain; charset=utf-8", headers={"Cache-Control": "no-store"})


@witness_bp.route("/<origin_hash>/checkpoint")
@public
def witnessed_checkpoint(origin_hash: str):
    """Serve the latest checkpoint cosigned for a log (by the SHA-256 hex of its origin)."""
    from service.audit.witness import cosigned_note_for

    session = get_session()
    note = cosigned_note_for(session, origin_hash)
    session.commit()
    if note is None:
        return _text(404, "no checkpoint cosigned for this log")
    return Response(note, content_type="text/plain; charset=utf-8",
                    headers={"Cache-Control": CHECKPOINT_CACHE})


def init_app(app: Flask) -> None:
    """Register /tlog/ and /witness/; both authenticate without forms, so CSRF does not apply."""
    from service.web.wiring import csrf

    csrf.exempt(bp)
    csrf.exempt(witness_bp)
    app.register_blueprint(bp)
    app.register_blueprint(witness_bp)
