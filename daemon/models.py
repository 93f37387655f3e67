"""The tables flowd keeps its state in, as SQLAlchemy Core metadata.

Core rather than the ORM: the engine commits many small updates per loop iteration and reads
rows as plain dicts, so an identity map and unit-of-work would cost time and buy nothing.
The migrations in ``versions/`` create exactly these tables; a test compares the two, so change
both together (and add a migration rather than editing a released one).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

HEAD_REVISION = "0005_variables"
"""The newest migration this code ships; checked with a plain query so an up-to-date open stays fast."""

VERSION_TABLE = "alembic_version"
"""Alembic's bookkeeping table. A database shared with another Alembic-managed application would
need a flow-specific name here (and a migration that renames the table)."""

ID_LENGTH = 250
"""Longest dag_id, run_id and task_id (Airflow's limit). Checked before writing, because SQLite would
store a longer value silently while PostgreSQL refuses it."""


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Stores naive UTC and returns aware UTC.

    A naive datetime is refused rather than guessed at: "naive" means different things to the
    scheduler clock, the user's DAG file and the server's local zone, and a silent guess here
    would shift schedules by hours.
    """

    impl = sa.DateTime(timezone=False)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise ValueError(f"expected a timezone-aware datetime, got {type(value).__name__} {value!r}")
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()} given; flow stores aware datetimes only")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC)


metadata = sa.MetaData()

dag = sa.Table(
    "dag",
    metadata,
    sa.Column("dag_id", sa.String(ID_LENGTH), primary_key=True),
    sa.Column("fileloc", sa.Text, nullable=False),
    sa.Column("is_paused", sa.Boolean, nullable=False),
    sa.Column("is_active", sa.Boolean, nullable=False),
    sa.Column("serialized", sa.JSON, nullable=False),
    sa.Column("schedule", sa.String, nullable=True),
    sa.Column("timezone", sa.String, nullable=False),
    sa.Column("owner", sa.String, nullable=False),
    sa.Column("tags", sa.JSON, nullable=False),
    sa.Column("description", sa.Text, nullable=True),
    sa.Column("next_dagrun", UTCDateTime, nullable=True),
    sa.Column("first_seen", UTCDateTime, nullable=False),
    sa.Column("last_parsed", UTCDateTime, nullable=False),
)

dag_run = sa.Table(
    "dag_run",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column(
        "dag_id", sa.String(ID_LENGTH), sa.ForeignKey("dag.dag_id", name="fk_dag_run_dag"), nullable=False
    ),
    sa.Column("run_id", sa.String(ID_LENGTH), nullable=False),
    sa.Column("run_type", sa.String(20), nullable=False),
    sa.Column("logical_date", UTCDateTime, nullable=False),
    sa.Column("data_interval_start", UTCDateTime, nullable=False),
    sa.Column("data_interval_end", UTCDateTime, nullable=False),
    sa.Column("state", sa.String(20), nullable=False),
    sa.Column("conf", sa.JSON, nullable=False),
    sa.Column("queued_at", UTCDateTime, nullable=False),
    sa.Column("start_date", UTCDateTime, nullable=True),
    sa.Column("end_date", UTCDateTime, nullable=True),
    sa.UniqueConstraint("dag_id", "run_id", name="uq_dag_run_dag_id_run_id"),
    # id ends the ordered indexes so "newest first, ties by id, LIMIT n" reads n index entries, no sort.
    sa.Index("ix_dag_run_dag_id_logical_date", "dag_id", "logical_date", "id"),
    sa.Index("ix_dag_run_dag_id_run_type_logical_date", "dag_id", "run_type", "logical_date"),
    sa.Index("ix_dag_run_state", "state"),
)

task_instance = sa.Table(
    "task_instance",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column(
        "dag_run_id",
        sa.Integer,
        sa.ForeignKey("dag_run.id", name="fk_task_instance_dag_run", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("dag_id", sa.String(ID_LENGTH), nullable=False),
    sa.Column("task_id", sa.String(ID_LENGTH), nullable=False),
    sa.Column("state", sa.String(20), nullable=False),
    sa.Column("try_number", sa.Integer, nullable=False),
    sa.Column("max_tries", sa.Integer, nullable=False),
    sa.Column("priority_weight", sa.Integer, nullable=False),
    sa.Column("operator", sa.String, nullable=False),
    sa.Column("queued_at", UTCDateTime, nullable=True),
    sa.Column("start_date", UTCDateTime, nullable=True),
    sa.Column("end_date", UTCDateTime, nullable=True),
    sa.Column("duration", sa.Float, nullable=True),
    sa.Column("hostname", sa.String, nullable=True),
    sa.Column("pid", sa.Integer, nullable=True),
    sa.Column("exit_code", sa.Integer, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("next_retry_at", UTCDateTime, nullable=True),
    sa.UniqueConstraint("dag_run_id", "task_id", name="uq_task_instance_dag_run_id_task_id"),
    sa.Index("ix_task_instance_dag_id_task_id", "dag_id", "task_id"),
    sa.Index("ix_task_instance_state", "state"),
)

task_try = sa.Table(
    "task_try",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column(
        "dag_run_id",
        sa.Integer,
        sa.ForeignKey("dag_run.id", name="fk_task_try_dag_run", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("task_id", sa.String(ID_LENGTH), nullable=False),
    sa.Column("try_number", sa.Integer, nullable=False),
    sa.Column("state", sa.String(20), nullable=False),
    sa.Column("start_date", UTCDateTime, nullable=False),
    sa.Column("end_date", UTCDateTime, nullable=True),
    sa.Column("duration", sa.Float, nullable=True),
    sa.Column("exit_code", sa.Integer, nullable=True),
    sa.Column("signal", sa.Integer, nullable=True),
    sa.Column("hostname", sa.String, nullable=False),
    sa.Column("pid", sa.Integer, nullable=True),
    sa.Column("log_path", sa.Text, nullable=False),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("rendered", sa.Text, nullable=True),
    sa.Column("rendered_cwd", sa.Text, nullable=True),
    sa.UniqueConstraint(
        "dag_run_id", "task_id", "try_number", name="uq_task_try_dag_run_id_task_id_try_number"
    ),
)
"""One row per try. `rendered` and `rendered_cwd` are what a bash try ran, after templating, as the
executor reported when its process started (capped; see executors.base.MAX_RENDERED_BYTES)."""

xcom = sa.Table(
    "xcom",
    metadata,
    sa.Column(
        "dag_run_id",
        sa.Integer,
        sa.ForeignKey("dag_run.id", name="fk_xcom_dag_run", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("task_id", sa.String(ID_LENGTH), primary_key=True),
    sa.Column("key", sa.String, primary_key=True),
    sa.Column("value", sa.JSON, nullable=True),
)

import_error = sa.Table(
    "import_error",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("filename", sa.Text, nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("traceback", sa.Text, nullable=False),
    sa.Column("timestamp", UTCDateTime, nullable=False),
    sa.UniqueConstraint("filename", name="uq_import_error_filename"),
)

audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("time", UTCDateTime, nullable=False),
    sa.Column("uid", sa.Integer, nullable=True),
    sa.Column("user", sa.String, nullable=True),
    sa.Column("action", sa.String, nullable=False),
    sa.Column("dag_id", sa.String(ID_LENGTH), nullable=True),
    sa.Column("run_id", sa.String(ID_LENGTH), nullable=True),
    sa.Column("task_id", sa.String(ID_LENGTH), nullable=True),
    sa.Column("params", sa.JSON, nullable=True),
    sa.Index("ix_audit_log_time", "time", "id"),
    sa.Index("ix_audit_log_dag_id_time", "dag_id", "time", "id"),
)

try_resources = sa.Table(
    "try_resources",
    metadata,
    sa.Column(
        "dag_run_id",
        sa.Integer,
        sa.ForeignKey("dag_run.id", name="fk_try_resources_dag_run", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("task_id", sa.String(ID_LENGTH), primary_key=True),
    sa.Column("try_number", sa.Integer, primary_key=True),
    sa.Column("cpu_user", sa.Float, nullable=True),
    sa.Column("cpu_system", sa.Float, nullable=True),
    sa.Column("peak_rss", sa.BigInteger, nullable=True),
    sa.Column("avg_cpu_percent", sa.Float, nullable=True),
    sa.Column("peak_cpu_percent", sa.Float, nullable=True),
    sa.Column("read_bytes", sa.BigInteger, nullable=True),
    sa.Column("write_bytes", sa.BigInteger, nullable=True),
    sa.Column("wall", sa.Float, nullable=True),
    sa.Column("max_procs", sa.Integer, nullable=True),
    sa.Column("max_threads", sa.Integer, nullable=True),
    sa.Column("series", sa.JSON, nullable=True),
)
"""One row per finished try that ran a process: its totals and a downsampled CPU/RSS series.
Apart from task_try so that the hot try updates stay narrow and the figures can be dropped alone."""

lease = sa.Table(
    "lease",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("epoch", sa.BigInteger, nullable=False),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("socket", sa.Text, nullable=False),
    sa.Column("acquired_at", UTCDateTime, nullable=False),
)
"""One row (id 1): which flowd holds the database and its epoch. Each flowd that takes the lock
increments the epoch; every write transaction checks it (``Store.fence``), so a flowd that lost
its lock cannot commit a scheduling decision even while it still believes it holds it."""

variable = sa.Table(
    "variable",
    metadata,
    sa.Column("key", sa.String(250), primary_key=True),
    sa.Column("val", sa.Text, nullable=False),
    sa.Column("description", sa.Text, nullable=True),
)
"""Airflow-style Variables (flow.variables): `flow variables ...` writes them, tries read them."""
