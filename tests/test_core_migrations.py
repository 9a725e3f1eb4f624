"""The migrations build exactly the schema the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

import service.core.models  # noqa: F401 - registers every model on Base.metadata
from service.core.db import Base, get_engine
from service.core.migrate import current_revision


def test_upgraded_schema_matches_the_models(app):
    """Every model change comes with its migration (a missing one would show up here)."""
    with app.app_context():
        engine = get_engine()
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_database_is_at_the_newest_revision(app):
    with app.app_context():
        assert current_revision(get_engine()) == "0012"


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_a_first_session_database_upgrades_and_keeps_its_data(kind, tmp_path):
    """A data directory made at revision 0001 upgrades in place; accounts and agents survive."""
    import contextlib

    from alembic import command
    from sqlalchemy import create_engine, text

    from service.core import migrate
    from tests.test_reliability_support import fresh_pg_schema

    place = (contextlib.nullcontext(f"sqlite:///{tmp_path / 'cu.db'}") if kind == "sqlite"
             else fresh_pg_schema())
    with place as url:
        engine = create_engine(url)
        try:
            cfg = migrate._config()
            with engine.begin() as conn:
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "0001")
                conn.execute(text(
                    "INSERT INTO \"user\" (username, full_name, email, roles, password_hash, "
                    "is_disabled, failed_logins, created_at) VALUES ('cu', '', 'cu@x.vn', '[]', 'h', "
                    ":f, 0, :t)"), {"f": False, "t": "2026-11-01 00:00:00"})
                conn.execute(text(
                    "INSERT INTO agent (agent_id, source, missing_events, is_silence_reported) "
                    "VALUES ('pc-1', 'nguon', 0, :f)"), {"f": False})
            with pytest.raises(migrate.SchemaError, match="older"):
                migrate.check(engine)
            migrate.upgrade(engine)
            migrate.check(engine)
            with engine.connect() as conn:
                assert conn.execute(text('SELECT username FROM "user"')).scalar_one() == "cu"
                assert conn.execute(text("SELECT config_hash FROM agent")).scalar_one() is None
                assert conn.execute(text("SELECT count(*) FROM login_throttle")).scalar_one() == 0
                assert conn.execute(text("SELECT count(*) FROM user_session")).scalar_one() == 0
                diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
            assert diff == []
        finally:
            engine.dispose()


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_0011_gives_stored_events_their_dedupe_key(kind, tmp_path):
    """Events stored before 0011 get log.event_key; a redelivery of them is still a duplicate."""
    import contextlib
    import importlib
    import uuid

    from alembic import command
    from sqlalchemy import create_engine, text
    from sqlalchemy.orm import Session

    from service.audit.log import event_key
    from service.core import migrate
    from service.events.conflicts import _stored_bodies
    from tests.test_reliability_support import fresh_pg_schema

    ids = [str(uuid.uuid4()) for _ in range(7)] + ["00000000-0000-0000-0000-000000000001"]
    place = (contextlib.nullcontext(f"sqlite:///{tmp_path / 'k.db'}") if kind == "sqlite"
             else fresh_pg_schema())
    with place as url:
        engine = create_engine(url)
        try:
            cfg = migrate._config()
            with engine.begin() as conn:
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "0008")
                rows = [{"seq": n, "kind": "event", "event_id": i,
                         "body": f'{{"body":{{"id":"{i}"}},"kind":"event"}}'} for n, i in enumerate(ids)]
                # A refusal naming an event id (no event stored under it) gets no key.
                rows.append({"seq": len(ids), "kind": "agent.host_mismatch", "event_id": str(uuid.uuid4()),
                             "body": '{"body":{},"kind":"agent.host_mismatch"}'})
                conn.execute(text(
                    "INSERT INTO audit_entry (seq, recorded_at, kind, body, leaf_hash, event_id) "
                    "VALUES (:seq, '2026-11-01 00:00:00.000000', :kind, :body, :leaf, :event_id)"),
                    [{**r, "leaf": bytes(32)} for r in rows])
            migrate.upgrade(engine)
            with engine.connect() as conn:
                got = dict(conn.execute(text("SELECT event_id, event_key FROM audit_entry")).all())
            assert {i: got[i] for i in ids} == {i: event_key(i) for i in ids}
            assert got[rows[-1]["event_id"]] is None
            migration = importlib.import_module("service.migrations.versions.0011_event_dedupe_key")
            assert all(migration._key(i) == event_key(i) for i in ids)
            with Session(engine) as session:
                found = _stored_bodies(session, [ids[3], ids[-1], rows[-1]["event_id"], str(uuid.uuid4())])
            assert sorted(found) == sorted([ids[3], ids[-1]])
            assert found[ids[3]] == (3, {"id": ids[3]})
        finally:
            engine.dispose()


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_0012_drops_tree_nodes_below_level_8_and_its_downgrade_rebuilds_them(kind, tmp_path):
    """After 0012 the trail reads the same roots and proofs without the level 1–7 rows."""
    import contextlib

    from alembic import command
    from sqlalchemy import create_engine, text
    from sqlalchemy.orm import Session

    from service.audit import log, merkle
    from service.core import migrate
    from tests.test_reliability_support import fresh_pg_schema

    size = 8_500  # two downgrade reads of 8,192 leaves; a partial last level-7 subtree
    leaves = [merkle.leaf_hash(n.to_bytes(4, "big")) for n in range(size)]
    old_layout = {(lv, i): h for lv, i, h in merkle.CompactRange().append(leaves) if lv > 0}
    place = (contextlib.nullcontext(f"sqlite:///{tmp_path / 'n.db'}") if kind == "sqlite"
             else fresh_pg_schema())
    with place as url:
        engine = create_engine(url)

        def nodes() -> dict:
            with engine.connect() as conn:
                rows = conn.execute(text('SELECT level, "index", hash FROM merkle_node')).all()
            return {(lv, i): bytes(h) for lv, i, h in rows}

        try:
            cfg = migrate._config()
            with engine.begin() as conn:
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "0011")
                conn.execute(text(
                    "INSERT INTO audit_entry (seq, recorded_at, kind, body, leaf_hash) "
                    "VALUES (:s, '2026-11-01 00:00:00.000000', 'event', '{}', :h)"),
                    [{"s": n, "h": h} for n, h in enumerate(leaves)])
                conn.execute(text('INSERT INTO merkle_node (level, "index", hash) VALUES (:l, :i, :h)'),
                             [{"l": lv, "i": i, "h": h} for (lv, i), h in old_layout.items()])
                conn.execute(text("INSERT INTO audit_head (id, size) VALUES (1, :n)"), {"n": size})
            migrate.upgrade(engine)
            assert nodes() == {key: h for key, h in old_layout.items() if key[0] >= 8}
            with Session(engine) as session:
                for tree in (size, 4097, 300):
                    assert log.root_at(session, tree) == merkle.root_hash(leaves[:tree])
                    for index in (0, 129, tree - 1):
                        assert log.inclusion_proof(session, index, tree) == merkle.inclusion_proof(
                            leaves[:tree], index)
            with engine.begin() as conn:
                cfg.attributes["connection"] = conn
                command.downgrade(cfg, "0011")
            assert nodes() == old_layout
        finally:
            engine.dispose()
