"""Alembic environment: runs on the connection handed over by service.core.migrate."""

from alembic import context

from service.core.models import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",  # SQLite needs table rebuilds to alter
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
