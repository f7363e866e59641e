"""Alembic environment: runs against the connection :mod:`gateway.store.migrate` hands in."""

from alembic import context

from gateway.store.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `v2v db upgrade` (gateway.store.migrate)")

context.configure(
    connection=connection, target_metadata=metadata, render_as_batch=True, compare_type=True
)
with context.begin_transaction():
    context.run_migrations()
