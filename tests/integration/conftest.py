"""Fixtures for tests that run the real engine: real child processes, a real SQLite file, real logs."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest

from flow.daemon.config import Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
FLOW = str(Path(sys.executable).parent / "flow")


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    for var in ("FLOW_DAGS_FOLDER", "FLOW_DB_URL", "FLOW_LOG_FOLDER", "FLOW_CONFIG", "FLOW_PARALLELISM"):
        monkeypatch.delenv(var, raising=False)
    (tmp_path / "dags").mkdir()
    return load_settings(
        {"dags_folder": str(tmp_path / "dags"), "db_url": f"sqlite:///{tmp_path / 'flow.db'}",
         "log_folder": str(tmp_path / "logs"), "default_timezone": "UTC"},
        config_file=tmp_path / "absent.toml",
    )


def write_dag(settings: Settings, name: str, source: str) -> Path:
    path = Path(settings.dags_folder) / name
    path.write_text(textwrap.dedent(source))
    return path


def copy_example(settings: Settings, name: str) -> Path:
    return Path(shutil.copy(ROOT / "dags" / name, settings.dags_folder))


class Clock:
    """A settable clock for scheduling tests; tasks still run for real."""

    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def make_engine(settings: Settings, *, clock=None, schedule: bool = False, listener=None):
    from flow.daemon.engine import Engine
    from flow.daemon.store import Store
    from flow.daemon.watch import FolderWatcher
    from flow.executors.local import LocalExecutor

    kwargs = {"clock": clock} if clock else {}
    engine = Engine(Store.open(settings.db_url), LocalExecutor(), settings, schedule=schedule,
                    listener=listener, **kwargs)
    engine.load()
    FolderWatcher(engine).refresh_sync()
    return engine


def run_until_idle(engine, timeout: float = 60.0) -> None:
    asyncio.run(asyncio.wait_for(engine.run(once=True, kill_on_exit=True), timeout))


def tis_of(engine, run_key: int) -> dict[str, dict]:
    return {t["task_id"]: t for t in engine.store.task_instances(run_key)}


def flow_cli(settings: Settings, *args: str, timeout: float = 120, env: dict | None = None):
    cmd = [FLOW, "--dags-folder", settings.dags_folder, "--db", settings.db_url,
           "--log-folder", settings.log_folder, *args]
    env = dict(os.environ if env is None else env)
    env.setdefault("FLOW_DEFAULT_TIMEZONE", settings.default_timezone)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)
