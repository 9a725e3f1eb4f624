"""Regenerate the initial migration from the models: for a fresh project only.

0001 has landed; later schema changes are new revisions (0002, ...), never a rewrite of 0001.
"""

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine

from service.core.migrate import MIGRATIONS

for old in (MIGRATIONS / "versions").glob("0001_*.py"):
    old.unlink()
db = Path("/tmp/canhgac-migration.db")
db.unlink(missing_ok=True)
cfg = Config()
cfg.set_main_option("script_location", str(MIGRATIONS))
with create_engine(f"sqlite:///{db}").begin() as conn:
    cfg.attributes["connection"] = conn
    command.revision(cfg, message="initial schema", autogenerate=True, rev_id="0001")
