"""`flowd`: the scheduler daemon, as systemd (or a person at a terminal) runs it.

One process, one asyncio loop: the engine, the DAG-folder watcher, the socket server, and the
sd_notify side (READY/STATUS/WATCHDOG/RELOADING/STOPPING) all share it. The watchdog ping runs
on that same loop on purpose: if the loop is stuck, the pings stop and systemd restarts flowd.

Exit status: 0 after SIGTERM/SIGINT; 1 when it cannot start (configuration, database, socket)
or the engine fails; 2 for a bad command line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import grp
import logging
import os
import pwd
import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .config import LOG_LEVELS, ConfigError, Settings, config_file_path, default_mode, load_settings, mask_url
from .dblock import NotAlone, refuse_if_running
from .systemd import Notifier, activated_socket, monotonic_usec, watchdog_interval

log = logging.getLogger("flow.flowd")

LIVE_SETTINGS = ("parallelism", "default_timezone", "paused_at_creation", "parse_timeout", "kill_grace",
                 "log_level", "log_retention_days", "max_log_bytes_per_try", "callback_timeout",
                 "sample_interval", "min_free_memory", "parse_memory_limit")
"""What a reload (SIGHUP) applies to the running daemon; everything else needs a restart."""
STATUS_PERIOD = 2.0
RELOAD_PARSE_WAIT = 10.0
"""Seconds a reload waits for the DAG folder's re-parse before it says READY=1 again; files still
being parsed then (a hanging one, say) arrive later, as they would without a reload."""
DB_LOCK_WAIT = 1.0
"""Seconds a database statement of flowd's waits for a lock held elsewhere: the loop serves the
socket too, so a stalled database fails the write (retried with backoff) instead of blocking it."""


class StartupError(Exception):
    """flowd cannot start; the message is the one line shown on stderr."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="flowd", description="The flow scheduler daemon: runs DAGs from a folder on their schedules.",
        epilog="Settings: built-in defaults < configuration file < FLOW_* environment < these flags. "
               "--print-config shows each effective value and where it came from.")
    p.add_argument("--config", metavar="PATH", help="configuration file (default: the mode's flowd.toml)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--system", dest="mode", action="store_const", const="system",
                      help="system service paths: /etc/flowd, /var/lib/flowd, /var/log/flowd, /run/flowd "
                           "(default when run as root)")
    mode.add_argument("--user", dest="mode", action="store_const", const="user",
                      help="per-user paths under ~/.config/flowd and ~/.local/share/flowd (default otherwise)")
    p.add_argument("--dags-folder", metavar="DIR")
    p.add_argument("--db", dest="db_url", metavar="URL", help="database URL or SQLite file path")
    p.add_argument("--log-folder", metavar="DIR", help="where task logs are written")
    p.add_argument("--socket", dest="socket_path", metavar="PATH", help="the Unix socket flowd listens on")
    p.add_argument("--parallelism", type=int, metavar="N", help="tasks running at once, at most")
    p.add_argument("--log-level", choices=LOG_LEVELS, type=str.lower)
    p.add_argument("--print-config", action="store_true", help="print the effective settings and exit")
    return p.parse_args(argv)


def resolve(args: argparse.Namespace) -> tuple[Settings, str, Path, dict[str, Any]]:
    mode = args.mode or default_mode()
    flags = {"dags_folder": args.dags_folder, "db_url": args.db_url, "log_folder": args.log_folder,
             "socket_path": args.socket_path, "parallelism": args.parallelism, "log_level": args.log_level}
    if args.config:
        path = Path(args.config).expanduser().absolute()
        if not path.is_file():
            raise ConfigError(f"configuration file {path} (from --config) does not exist")
    else:
        path = config_file_path(mode)
    return load_settings(flags, config_file=path, mode=mode), mode, path, flags


class JournalFormatter(logging.Formatter):
    """Under journald ($JOURNAL_STREAM), "<N>" prefixes carry the priority and the journal adds the time."""

    PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record).replace("\n", " | ")
        return f"<{self.PRIORITY.get(record.levelno, 6)}>{text}"


def setup_logging(level: str) -> None:
    """Under systemd, entries with fields on the journal's native socket (stderr when it cannot take
    one); else stderr, with "<N>" priority prefixes when stderr is a journal stream."""
    from .service.journal import journal_handler

    stream = logging.StreamHandler(sys.stderr)
    if os.environ.get("JOURNAL_STREAM"):
        stream.setFormatter(JournalFormatter("%(name)s: %(message)s"))
    else:
        stream.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    handler: logging.Handler = journal_handler(fallback=stream) or stream
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("alembic").setLevel(logging.WARNING)


def prepare_folders(settings: Settings, mode: str, activated: bool) -> None:
    """Create the DAG folder and the socket's folder, so a first run needs no setup at all."""
    try:
        Path(settings.dags_folder).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StartupError(f"cannot create the DAG folder {settings.dags_folder}: {exc.strerror}") from None
    if activated:
        return
    try:
        refuse_if_running(settings.socket_path)
    except NotAlone as exc:
        raise StartupError(str(exc)) from None
    parent = Path(settings.socket_path).parent
    try:
        parent.mkdir(parents=True, exist_ok=True, mode=0o755 if mode == "system" else 0o700)
    except OSError as exc:
        raise StartupError(f"cannot create the socket folder {parent}: {exc.strerror}") from None


def secure_files(settings: Settings, mode: str) -> Callable[[], None]:
    """Task logs, exit records and the database are readable by flowd's user only, and in system
    mode by the operator group too (as the unit's UMask and tmpfiles make them): a user the
    socket refuses must not read them from disk. See flow/filemodes.py for the rule.

    The roots (the log folder, the database and its companions) are made or narrowed now, which
    already shuts others out of the whole tree. What an older flowd (or a umask of 022) left
    inside the log folder is narrowed by the returned check, which walks every file and so runs
    in a thread after READY; it logs one warning for all it changed, roots included."""
    from flow import filemodes

    gid = None
    if mode == "system":
        try:
            gid = grp.getgrnam(settings.operator_group).gr_gid
        except KeyError:
            log.warning("operator group %r does not exist: logs and the database are readable by %s only",
                        settings.operator_group, _user())
    fixed = filemodes.Fixed()
    try:
        filemodes.secure_root(settings.log_folder, directory=True, gid=gid, fixed=fixed)
    except OSError as exc:
        raise StartupError(f"cannot create the log folder {settings.log_folder}: {exc.strerror}") from None
    db = sqlite_file(settings.db_url)
    if db is not None:
        try:
            filemodes.makedirs(os.path.dirname(db), inherit=False, gid=gid)
            filemodes.secure_root(db, directory=False, gid=gid, fixed=fixed)
        except OSError as exc:
            raise StartupError(f"cannot open the database at {db}: {exc.strerror}") from None
        for companion in ("-wal", "-shm", "-journal", ".flowd-lock"):
            filemodes.secure_file(db + companion, gid=gid, fixed=fixed)

    def check_log_tree() -> None:
        try:
            filemodes.secure_tree(settings.log_folder, gid=gid, fixed=fixed)
        except Exception:
            log.exception("checking the modes of the files in %s failed", settings.log_folder)
        who = f"{_user()} and group {settings.operator_group}" if gid is not None else f"{_user()} only"
        if fixed.count:
            log.warning("made %d files and folders readable by %s (logs, exit records, the database were "
                        "readable by other users; e.g. %s)", fixed.count, who, fixed.example)
        if fixed.failed:
            log.warning("could not restrict %d files and folders to %s (e.g. %s)", len(fixed.failed), who,
                        fixed.failed[0])
    return check_log_tree


def sqlite_file(db_url: str) -> str | None:
    """The SQLite database's path, from a URL normalize_db_url has made absolute; None otherwise."""
    if not db_url.startswith("sqlite:///"):
        return None
    path = db_url[len("sqlite:///"):].split("?", 1)[0]
    return path if path and path != ":memory:" else None


def _user() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return f"uid {os.geteuid()}"


class Daemon:
    """flowd's life: start in order, signal READY, serve until SIGTERM, reload on SIGHUP."""

    def __init__(self, settings: Settings, *, mode: str, config_file: Path, flags: dict[str, Any],
                 notifier: Notifier, watchdog: float | None, sock: socket.socket | None) -> None:
        self.settings = settings
        self.mode = mode
        self.config_file = config_file
        self.flags = flags
        self.notifier = notifier
        self.watchdog = watchdog
        self.sock = sock
        self.engine: Any = None
        self.server: Any = None
        self.db_lock: Any = None
        self.watcher: Any = None
        self.metrics: Any = None
        self.stopping = asyncio.Event()
        self._ready = False
        self._reloading = False
        self._reload_again = False
        self._status = ""
        self._tasks: list[asyncio.Task[Any]] = []
        self.after_ready: list[Callable[[], None]] = []
        """Slow start-up checks that need not hold READY back (each runs once, in a thread)."""
        self._unsaved_parse: float | None = None
        """When a parse could not be written to the database (full, stalled): then the folder is
        parsed again from scratch once the database can be written."""
        self._fatal: str | None = None
        """Why flowd must stop although nobody asked it to (the database lock or file is gone)."""

    # -- start -----------------------------------------------------------------------------

    async def open_store(self) -> Any:
        """Lock, open (migrate) and take the lease; while the database's disk is full, wait for space
        with backoff instead of exiting (systemd would only restart flowd into the same full disk)."""
        import sqlalchemy as sa

        from .dblock import DatabaseHealth, DatabaseLock, NotAlone
        from .store import Store, StoreError, parse_url

        try:
            url = parse_url(self.settings.db_url)
            self.db_lock = DatabaseLock.acquire(url, self.settings.socket_path)
        except (StoreError, NotAlone) as exc:
            raise StartupError(str(exc)) from None
        health = DatabaseHealth(url.database if url.get_backend_name() == "sqlite" else None)
        while True:
            store = None
            try:
                store = Store.open(self.settings.db_url, lock_wait=DB_LOCK_WAIT)
                self.db_lock.pin()
                # Before anything is read: from here on a flowd that lost the lock cannot commit.
                store.take_lease(socket.gethostname(), os.getpid(), self.settings.socket_path, _utcnow())
                health.recovered()
                return store
            except (StoreError, sa.exc.OperationalError) as exc:
                if store is not None:
                    store.close()
                problem, text = health.classify(exc)
                if problem != "database full" or self.stopping.is_set():
                    raise StartupError(str(exc) if isinstance(exc, StoreError)
                                       else f"cannot write the database {url}: {text}") from None
                delay = health.failed(exc)
                self.notifier.notify(f"STATUS=database full, waiting for space: {health.detail}"[:1000],
                                     f"EXTEND_TIMEOUT_USEC={int((delay + 30) * 1e6)}")
                try:
                    async with asyncio.timeout(delay):
                        await self.stopping.wait()
                except TimeoutError:
                    pass

    async def open_engine(self) -> None:
        from flow.executors.base import build_executor

        from .engine import Engine

        store = await self.open_store()
        try:
            executor = build_executor(self.settings.executor, connections_file=self.settings.connections_file)
        except (KeyError, ValueError) as exc:
            raise StartupError(f"setting executor = {self.settings.executor!r}: {exc}") from None
        from .housekeeping import Housekeeping
        from .notify import Notifications

        self.engine = Engine(store, executor, self.settings, schedule=True)
        self.engine.retry_writes = True
        self.engine.notifications = Notifications(self.settings, store)
        self.engine.housekeeping = Housekeeping(self.engine, self.settings)
        self.engine.load()

    async def refresh(self) -> None:
        """The engine's periodic folder scan; a broken DAG folder is logged, never fatal."""
        import sqlalchemy as sa

        lost = self.watcher.unsaved
        if lost is not None:  # a parse result arrived while the database could not take it
            self.watcher.unsaved = None
            self._parse_lost(lost)
        try:
            if self._unsaved_parse is not None:
                if self.engine.health.problem is not None or time.monotonic() - self._unsaved_parse < 5.0:
                    return
                # The scan noted the files as seen though their parse was never recorded: all again.
                self._unsaved_parse = None
                self.watcher.rescan()
            await self.watcher.refresh()
        except sa.exc.OperationalError as exc:
            self._parse_lost(exc)
        except Exception as exc:
            log.error("scanning the DAG folder %s failed: %s", self.settings.dags_folder, exc)
        try:
            self.engine.notifications.check_dags(self.engine.dags, self.engine.inactive)
        except Exception:
            log.exception("checking the notifiers DAGs name failed")

    def _parse_lost(self, exc: Exception) -> None:
        if self._unsaved_parse is None:
            orig = getattr(exc, "orig", exc)
            log.error("cannot record the DAG folder's parse (%s); parsing it again once the database "
                      "can be written", " ".join(str(orig).split())[:300])
        self._unsaved_parse = time.monotonic()

    async def rescan_all(self) -> None:
        """Parse every DAG file again, as a fresh start would, and wait (a while) for the results."""
        self.watcher.rescan()
        await self.refresh()
        if not await self.watcher.settle(RELOAD_PARSE_WAIT):
            log.info("reload: some DAG files are still being parsed after %gs; they load when done",
                     RELOAD_PARSE_WAIT)

    async def start(self) -> None:
        """Everything before READY=1: the store, recovery, the socket. Not the DAG folder: the
        engine schedules the DAGs the store holds, and the folder is parsed beside it once the
        loop runs (the first scan re-parses every file, so what changed while flowd was down
        replaces its stored form when its parse arrives)."""
        from .server import Server, ServerError
        from .watch import FolderWatcher

        if self.settings.metrics_listen:
            from .monitor.exporter import ExporterError, parse_listen

            try:
                parse_listen(self.settings.metrics_listen)
            except ExporterError as exc:
                raise StartupError(str(exc)) from None
        await self.open_engine()
        if self.stopping.is_set():
            return
        self.watcher = FolderWatcher(self.engine)
        self.server = Server(self.engine, self.settings, sock=self.sock)
        try:
            await self.server.start()
        except ServerError as exc:
            raise StartupError(str(exc)) from None
        except OSError as exc:
            raise StartupError(f"cannot listen on {self.settings.socket_path}: {exc.strerror or exc}") from None
        from .service import outcomes

        listeners = [self.server.publish, outcomes.observe]
        if self.settings.metrics_listen or self.settings.metrics_textfile:
            listeners.append(await self.start_metrics())
            self.watcher.on_parsed = self.metrics.metrics.parsed
        self.engine.listener = fan_out(listeners)

    async def start_metrics(self) -> Callable[[str, dict[str, Any]], None]:
        """Prometheus metrics (off by default): fed by the engine's events beside the socket server."""
        from .monitor.exporter import ExporterError, MetricsService

        self.metrics = MetricsService(self.engine, self.server, self.settings)
        try:
            await self.metrics.start()
        except ExporterError as exc:
            raise StartupError(str(exc)) from None
        return self.metrics.observe

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop, sig)
        loop.add_signal_handler(signal.SIGHUP, self.request_reload)
        if self.watchdog:
            self._spawn(self._watchdog_loop(self.watchdog), "watchdog")
        await self.start()
        if self.stopping.is_set():
            await self.shutdown(None)
            return 0
        self._status = self.status_line()
        self.notifier.notify("READY=1", f"STATUS={self._status}", f"MAINPID={os.getpid()}")
        self._ready = True
        log.info("flowd %s ready on %s (%s mode, pid %d): %s", _version(), self.settings.socket_path, self.mode,
                 os.getpid(), self._status)
        self._spawn(self._status_loop(), "status")
        self._spawn(self.engine.housekeeping.run(), "housekeeping")
        for check in self.after_ready:
            self._spawn(asyncio.to_thread(check), "after-ready check")
        from .dblock import watch

        self._spawn(watch(self.db_lock, self.engine.store, self.engine.set_hold, self.fail), "dblock")
        if self._reload_again:
            self.request_reload()  # a SIGHUP that came during start-up
        kill = self.settings.stop_mode == "kill"
        engine_task = asyncio.create_task(self.engine.run(periodic=self.refresh, period=1.0, kill_on_exit=kill),
                                          name="engine")
        stop_task = asyncio.create_task(self.stopping.wait(), name="stop")
        await asyncio.wait({engine_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
        code = 0
        from .store import LeaseLost

        if engine_task.done() and isinstance(engine_task.exception(), LeaseLost):
            self.fail(str(engine_task.exception()))
        if self._fatal is not None:
            stop_task.cancel()
            code = 1
        elif engine_task.done():
            stop_task.cancel()
            exc = engine_task.exception()
            why = f"{type(exc).__name__}: {exc}" if exc else "its loop returned"
            log.error("the engine stopped (%s); exiting so that flowd is restarted", why, exc_info=exc)
            self.notifier.notify(f"STATUS=failed: the engine stopped ({why})")
            code = 1
        await self.shutdown(engine_task)
        return code

    # -- running ---------------------------------------------------------------------------

    def _spawn(self, coro: Any, name: str) -> None:
        self._tasks = [t for t in self._tasks if not t.done()]
        self._tasks.append(asyncio.create_task(coro, name=name))

    async def _watchdog_loop(self, interval: float) -> None:
        while True:
            self.notifier.notify("WATCHDOG=1")
            await asyncio.sleep(interval)

    def status_line(self) -> str:
        """The one line systemctl status shows. Read from the engine, not Server.status(), whose
        CPU figure is measured between calls and would then cover only this 2 s poll."""
        engine = self.engine
        try:
            dags = sum(1 for d in engine.dags if d not in engine.inactive)
            errors = engine.import_error_count
            problem = engine.housekeeping.logs.problem if engine.housekeeping is not None else None
            logs = "; logs incomplete (see flow status)" if problem else ""
            return f"{dags} DAGs, {engine.running_count()} running, {errors} import errors{logs}"
        except Exception as exc:
            log.warning("cannot compute the status line: %s", exc)
            return self._status or "running"

    async def _status_loop(self) -> None:
        while True:
            await asyncio.sleep(STATUS_PERIOD)
            line = self.status_line()
            if line != self._status and not self._reloading:
                self._status = line
                self.notifier.notify(f"STATUS={line}")

    def fail(self, reason: str) -> None:
        """Stop because flowd may not go on (its database lock or file is gone): one line says why."""
        if self._fatal is not None:
            return
        self._fatal = reason
        if self.engine is not None:
            self.engine.superseded = True
        log.error("%s", reason)
        self.notifier.notify("STOPPING=1", f"STATUS=failed: {reason}"[:1000])
        self.stopping.set()

    def request_stop(self, sig: int) -> None:
        if self.stopping.is_set():
            log.info("already stopping")
            return
        log.info("%s: stopping (stop_mode %s)", signal.Signals(sig).name, self.settings.stop_mode)
        self.notifier.notify("STOPPING=1", "STATUS=stopping")
        self.stopping.set()

    def request_reload(self) -> None:
        if self.stopping.is_set():
            return
        if self._reloading or not self._ready:
            self._reload_again = True
            return
        self._spawn(self.reload(), "reload")

    async def reload(self) -> None:
        """SIGHUP: re-read the configuration, apply what can change live, parse every DAG file again."""
        self._reloading = True
        try:
            while True:
                self._reload_again = False
                self.notifier.notify("RELOADING=1", f"MONOTONIC_USEC={monotonic_usec()}", "STATUS=reloading")
                log.info("SIGHUP: reloading the configuration and the DAG folder")
                self.apply_settings()
                await self.rescan_all()
                self.engine.wake()
                if not self._reload_again:
                    break
        except Exception:
            log.exception("reload failed; carrying on with what was loaded")
        finally:
            # systemd waits for READY=1 after RELOADING=1, whatever happened in between.
            self._reloading = False
            self._status = self.status_line()
            if not self.stopping.is_set():
                self.notifier.notify("READY=1", f"STATUS={self._status}")
        log.info("reloaded: %s", self._status)
        if not self.stopping.is_set():
            self._spawn(self.engine.housekeeping.sweep(), "sweep")  # a changed retention applies now

    def apply_settings(self) -> None:
        try:
            new = load_settings(self.flags, config_file=self.config_file, mode=self.mode)
        except ConfigError as exc:
            log.error("reload: %s; keeping the running configuration", exc)
            return
        for name, value in new.as_dict().items():
            old = getattr(self.settings, name)
            if value == old:
                continue
            shown = (mask_url(old), mask_url(value)) if name == "db_url" else (old, value)
            if name in LIVE_SETTINGS:
                setattr(self.settings, name, value)
                self.settings.sources[name] = new.sources[name]
                log.info("reload: %s = %r (was %r, from %s)", name, shown[1], shown[0], new.sources[name])
            else:
                log.warning("reload: %s changed to %r (from %s) but needs a restart to apply; still %r",
                            name, shown[1], new.sources[name], shown[0])
        if new.notifiers != self.settings.notifiers:
            self.settings.notifiers = new.notifiers
            log.info("reload: notifiers now %s", ", ".join(n.describe() for n in new.notifiers.values()) or "none")
        logging.getLogger().setLevel(self.settings.log_level.upper())

    # -- stop ------------------------------------------------------------------------------

    async def shutdown(self, engine_task: asyncio.Task[Any] | None) -> None:
        """Stop accepting requests, then stop the engine (adopt: tasks carry on; kill: they end first)."""
        running = self.engine.running_count() if self.engine is not None else 0
        for task in self._tasks:
            task.cancel()
        if self.server is not None:
            try:
                await self.server.stop()
            except Exception:
                log.exception("stopping the socket server failed")
        if self.metrics is not None:
            with contextlib.suppress(Exception):
                await self.metrics.stop()
        if engine_task is not None:
            engine_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await engine_task
        if self.watcher is not None:
            try:
                await self.watcher.close()
            except Exception:
                log.exception("stopping the DAG parsers failed")
        if self.engine is not None and self.engine.notifications is not None:
            self.engine.notifications.close()
        with contextlib.suppress(Exception):
            self.engine.store.close()
        if self.db_lock is not None:
            self.db_lock.release()
        log.info("flowd stopped%s", f"; {running} task(s) left to the runner for the next flowd"
                 if running and self.settings.stop_mode == "adopt" else "")


def fan_out(listeners: list[Callable[[str, dict[str, Any]], None]]) -> Callable[[str, dict[str, Any]], None]:
    """One engine listener that hands every event to each of `listeners` in turn."""
    def each(kind: str, payload: dict[str, Any]) -> None:
        for listener in listeners:
            listener(kind, payload)

    return each


def _utcnow() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("flowtui")
    except Exception:
        return "unknown"


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    started = time.monotonic()
    # Read and remove what systemd passed, so the runner and the tasks never inherit it.
    notifier = Notifier.from_environ()
    watchdog = watchdog_interval()
    sock = activated_socket()
    try:
        settings, mode, path, flags = resolve(args)
    except ConfigError as exc:
        print(f"flowd: {exc}", file=sys.stderr)
        notifier.notify(f"STATUS=failed: {exc}")
        sys.exit(1)
    if args.print_config:
        from .config import render_settings

        sys.stdout.write(render_settings(settings, mode=mode, config_file=path))
        sys.exit(0)
    setup_logging(settings.log_level)
    from .service.memory import fix_heap_policy

    fix_heap_policy()
    if sock is not None:
        name = sock.getsockname()
        settings.socket_path = name if isinstance(name, str) and name else settings.socket_path
        settings.sources["socket_path"] = "socket activation"
    try:
        prepare_folders(settings, mode, sock is not None)
        check_modes = secure_files(settings, mode)
        daemon = Daemon(settings, mode=mode, config_file=path, flags=flags, notifier=notifier,
                        watchdog=watchdog, sock=sock)
        daemon.after_ready.append(check_modes)
        code = asyncio.run(daemon.run())
    except StartupError as exc:
        print(f"flowd: {exc}", file=sys.stderr)
        notifier.notify(f"STATUS=failed: {exc}")
        sys.exit(1)
    log.debug("ran for %.1fs", time.monotonic() - started)
    sys.exit(code)
