"""The migrations build exactly the schema the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

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
        assert current_revision(get_engine()) == "0003"
