"""Protocol handlers for day-two operations: `db.clean`, and the alert and storage parts of `status`."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from .dbclean import clean, remove_logs

if TYPE_CHECKING:
    from .handlers import Call


def ops_status(engine: Any) -> dict[str, Any]:
    """`notifications` and `storage` for the status reply (None where this flowd has no such service)."""
    notifications = getattr(engine, "notifications", None)
    housekeeping = getattr(engine, "housekeeping", None)
    storage = housekeeping.status() if housekeeping is not None else None
    problem = (storage or {}).get("log_problem")
    return {"notifications": notifications.status() if notifications is not None else None,
            "storage": storage,
            "problems": [f"{problem['reason']} since {problem['since']}: {problem['tries']} tries' logs "
                         f"incomplete, last {problem['last_try']}"] if problem else [],
            "default_timezone": getattr(engine.settings, "default_timezone", None) or "UTC",
            "database": database_status(engine)}


def database_status(engine: Any) -> dict[str, Any] | None:
    """From memory, so it answers while the database does not: the last write's trouble (`problem`:
    "database full", "database stalled", for how long), the lock, and this flowd's lease epoch."""
    health = getattr(engine, "health", None)
    if health is None:
        return None
    return health.status() | {"lock": engine.hold_reason or "held", "epoch": engine.store.fence_epoch}


async def db_clean(call: Call, p: dict[str, Any]) -> dict[str, Any]:
    """Remove (or count, with dry_run) finished runs before `before` and their logs; audited."""
    engine = call.engine
    busy = set(engine.runs)
    dry_run = p["dry_run"]
    found = clean(engine.store, engine.settings.log_folder, p["before"], busy, dry_run=dry_run, dag_id=p["dag_id"])
    files, size = await asyncio.to_thread(remove_logs, found["folders"], dry_run=dry_run)
    result = {"dry_run": dry_run, "before": p["before"].isoformat(), "runs": found["runs"], "rows": found["rows"],
              "log_files": files, "log_bytes": size}
    if not dry_run:
        actor = call.actor
        with engine.store.begin() as tx:
            tx.add_audit(time=engine.clock(), uid=actor.get("uid"), user=actor.get("user"), action="db.clean",
                         dag_id=p["dag_id"], params={k: v for k, v in result.items() if k != "dry_run"})
    return result
