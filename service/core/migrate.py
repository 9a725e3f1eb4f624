"""Schema migrations with Alembic: upgrade at init, check at serve."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


class SchemaError(RuntimeError):
    """The database schema does not match this version of the code."""


def _config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def upgrade(engine: Engine) -> None:
    """Apply every migration up to the newest."""
    cfg = _config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def current_revision(engine: Engine) -> str | None:
    """Return the database's schema revision, or None when it has none."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def check(engine: Engine) -> None:
    """Refuse a database whose schema is missing, older or newer than the code."""
    script = ScriptDirectory.from_config(_config())
    head = script.get_current_head()
    current = current_revision(engine)
    if current == head:
        return
    if current is None:
        raise SchemaError("the database has no schema yet: run `canhgac init`")
    known = {rev.revision for rev in script.walk_revisions()}
    if current not in known:
        raise SchemaError(
            f"the database schema ({current}) is newer than this code ({head}): upgrade Canh Gác"
        )
    raise SchemaError(f"the database schema ({current}) is older than the code ({head}): "
                      "run `canhgac init` to upgrade it")
