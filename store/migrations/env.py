"""Alembic environment for the hardcase store.

``store.db.upgrade`` / ``store.db.downgrade`` run Alembic programmatically and
hand over a connection that is already inside the migration transaction (via
``config.attributes["connection"]``), so no ``alembic.ini`` is needed.

Developers can also use the ``alembic`` command line with ``store/alembic.ini``,
e.g. to autogenerate a new revision::

    alembic -c store/alembic.ini -x url=sqlite:///dev.db revision --autogenerate -m "..."

(``-x url=...`` or the ``HARDCASE_DB`` environment variable names the database).
"""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy.engine import Connection

from hardcase.store.schema import metadata

config = context.config


def configure_with(connection: Connection) -> None:
    """Point Alembic at ``connection`` and the store's metadata."""
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )


def database_url() -> str:
    """The URL given with ``-x url=...``, ``sqlalchemy.url`` or ``HARDCASE_DB``."""
    url = (
        context.get_x_argument(as_dictionary=True).get("url")
        or config.get_main_option("sqlalchemy.url")
        or os.environ.get("HARDCASE_DB")
    )
    if not url:
        raise SystemExit("no database URL: pass -x url=... or set HARDCASE_DB")
    return url


def run_migrations_offline() -> None:
    """Emit the migration SQL as text (``alembic upgrade --sql``)."""
    url = database_url()
    context.configure(
        url=url,
        target_metadata=metadata,
        literal_binds=True,
        render_as_batch=url.startswith("sqlite"),
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Run the migrations on a live database."""
    connection = config.attributes.get("connection")
    if connection is not None:
        configure_with(connection)
        with context.begin_transaction():
            context.run_migrations()
        return

    from hardcase.store.db import migration_connection, open_store

    store = open_store(database_url(), upgrade=False)
    try:
        with migration_connection(store) as connection:
            configure_with(connection)
            context.run_migrations()
    finally:
        store.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
