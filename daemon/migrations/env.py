"""Alembic environment for flow's store.

``Store.upgrade()`` hands over an open connection in ``config.attributes["connection"]``, already
inside its write transaction, so two processes opening the same database migrate one after the
other. Without one (a developer drafting a migration with the ``alembic`` command and an ini that
sets ``script_location`` and ``sqlalchemy.url``), a short-lived engine is built from that URL.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from flow.daemon.models import VERSION_TABLE, metadata

config = context.config


def _configure(**kwargs: object) -> None:
    context.configure(
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        compare_type=True,
        render_as_batch=True,
        **kwargs,
    )


def run_offline() -> None:
    _configure(url=config.get_main_option("sqlalchemy.url"), literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection=connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = sa.create_engine(config.get_main_option("sqlalchemy.url") or "", poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        _configure(connection=conn)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
