"""The DAG-folder loader: notice which files changed, parse them in a child process, track ownership.

flowd never imports user DAG code itself: a file that hangs, segfaults or calls ``os._exit`` at
import must cost the daemon nothing but that file's import error. Files are parsed by
``python -m flow.daemon.parser`` (that module holds both ends of the protocol) in its own
session, driven by a ``flow.daemon.dags.pool.ParsePool``; when one file overruns its timeout or
the child dies, the child's whole process group is killed, the file gets an import error, and a
fresh child takes the files that remain.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from .dags.pool import ParsePool
from .parser import FileResult, ParserStartError

log = logging.getLogger(__name__)

__all__ = ["Changes", "DagFolder", "DagRegistry", "FileResult", "ParserStartError", "RegistryUpdate",
           "parse_files", "parse_files_async"]

IGNORE_FILE = ".flowignore"


@dataclass(frozen=True)
class Changes:
    changed: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# Scanning


def _compile_ignore(text: str, source: str) -> list[tuple[re.Pattern[str], bool, bool]]:
    """gitignore-like globs: a pattern without "/" matches a name at any depth, one with "/"
    is relative to the folder root, a trailing "/" matches directories only, "#" starts a
    comment. fnmatch syntax (``*``, ``?``, ``[...]``); negation is not supported."""
    rules = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("!"):
            raise ValueError(f"{source} line {number}: negated patterns ('{line}') are not supported")
        dir_only = line.endswith("/")
        pattern = line.strip("/")
        if not pattern:
            raise ValueError(f"{source} line {number}: '{line}' would ignore the whole folder")
        rules.append((re.compile(fnmatch.translate(pattern)), dir_only, "/" in pattern))
    return rules


class DagFolder:
    """Finds DAG files whose (mtime_ns, size) changed since the previous scan, without reading them.

    Only ``stat`` per file, so scanning a folder of 1,000 files every second costs a few
    milliseconds. The first scan reports every file as changed.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.path.abspath(os.fspath(path))
        self._seen: dict[str, tuple[int, int]] = {}
        self._ignore_stamp: tuple[int, int] | None = None
        self._ignore: list[tuple[re.Pattern[str], bool, bool]] = []

    def scan(self) -> Changes:
        if not os.path.isdir(self.path):
            if os.path.exists(self.path):
                raise NotADirectoryError(f"DAG folder {self.path} is not a directory")
            raise FileNotFoundError(f"DAG folder {self.path} does not exist")
        self._load_ignore()
        current: dict[str, tuple[int, int]] = {}
        self._walk(self.path, "", current, set())
        changed = sorted(p for p, stamp in current.items() if self._seen.get(p) != stamp)
        deleted = sorted(p for p in self._seen if p not in current)
        self._seen = current
        return Changes(changed=changed, deleted=deleted)

    def _load_ignore(self) -> None:
        ignore_path = os.path.join(self.path, IGNORE_FILE)
        try:
            st = os.stat(ignore_path)
        except FileNotFoundError:
            self._ignore_stamp, self._ignore = None, []
            return
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp != self._ignore_stamp:
            with open(ignore_path, encoding="utf-8") as fh:
                self._ignore = _compile_ignore(fh.read(), ignore_path)
            self._ignore_stamp = stamp

    def _ignored(self, relpath: str, is_dir: bool) -> bool:
        name = relpath.rpartition("/")[2]
        return any(regex.match(relpath if anchored else name) and (is_dir or not dir_only)
                   for regex, dir_only, anchored in self._ignore)

    def _walk(self, directory: str, rel: str, out: dict[str, tuple[int, int]], visited: set) -> None:
        try:
            dir_stat = os.stat(directory)
            if (dir_stat.st_dev, dir_stat.st_ino) in visited:
                return  # a symlink loop
            visited.add((dir_stat.st_dev, dir_stat.st_ino))
            entries = list(os.scandir(directory))
        except OSError as exc:
            if directory == self.path:
                raise
            log.warning("skipping %s in the DAG folder: %s", directory, exc)
            return
        for entry in entries:
            name = entry.name
            if name.startswith((".", "_")):
                continue
            relpath = f"{rel}{name}"
            try:
                if entry.is_dir():
                    if not self._ignored(relpath, True):
                        self._walk(entry.path, relpath + "/", out, visited)
                elif name.endswith(".py") and entry.is_file() and not self._ignored(relpath, False):
                    st = entry.stat()
                    out[entry.path] = (st.st_mtime_ns, st.st_size)
            except FileNotFoundError:
                continue  # removed while we looked: the next scan reports it


# ---------------------------------------------------------------------------------------------
# Parsing in a child process


async def parse_files_async(paths: Iterable[str], *, timeout: float = 30.0,
                            memory_limit: int | None = None) -> dict[str, FileResult]:
    """Parse each file in a child process; every file gets a result, broken files an import error.

    ``timeout`` bounds each file's import, not the batch. Raises ParserStartError only when a
    fresh child cannot even import flow (a broken installation, not a broken DAG file). One
    child at a time, as the CLI wants; flowd keeps a ``ParsePool`` of its own instead.
    """
    if timeout <= 0:
        raise ValueError(f"parse timeout must be positive, got {timeout!r}")
    results: dict[str, FileResult] = {}
    pool = ParsePool(results.__setitem__, processes=1, timeout=lambda: timeout,
                     memory_limit=lambda: memory_limit, fail_fast=True)
    try:
        pool.submit(dict.fromkeys(paths))
        await pool.wait_idle()
    finally:
        await pool.close()  # also when cancelled (flowd shutting down): leave no parser behind
    return results


def parse_files(paths: Iterable[str], *, timeout: float = 30.0,
                memory_limit: int | None = None) -> dict[str, FileResult]:
    """Blocking form of ``parse_files_async`` for the CLI; flowd parses through a ``ParsePool``."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(parse_files_async(paths, timeout=timeout, memory_limit=memory_limit))
    raise RuntimeError("parse_files() blocks; inside an event loop use `await parse_files_async(...)`")


# ---------------------------------------------------------------------------------------------
# Ownership across files


@dataclass(frozen=True)
class RegistryUpdate:
    """What one ``DagRegistry.apply`` changed, ready for the store.

    ``upserts``: serialized DAGs that are new, changed, or moved to another file (mark active).
    ``deactivated``: DAG ids no file defines any more (keep their history).
    ``parsed_files``: every file whose import-error state this update settles: the files just
    parsed, the deleted ones, and files not re-parsed whose DAG-id conflict resolved itself.
    ``errors``: the import error of each file in ``parsed_files`` that has one; every other file
    in ``parsed_files`` has none now, so the caller can replace its stored errors for exactly
    those files.
    """

    upserts: list[dict] = field(default_factory=list)
    deactivated: list[str] = field(default_factory=list)
    errors: dict[str, tuple[str, str]] = field(default_factory=dict)
    parsed_files: list[str] = field(default_factory=list)


class DagRegistry:
    """Which file owns which DAG id, merged across parse batches.

    - The first file to define a DAG id owns it. Another file defining the same id gets the
      import error "<file>: DAG id 'x' is already defined in <owner>", and its other DAGs load.
      When the owner drops the id or is deleted, the earliest such claimant takes the DAG over
      and its error clears without waiting for that file to be touched.
    - A DAG that disappears from a file that parsed cleanly, or whose file is deleted, is
      deactivated; the store keeps its runs and history.
    - A file that now has an import error keeps its previously loaded DAGs active (Airflow's
      behaviour): a broken edit shows an error but must not make a DAG and its schedule
      vanish. DAGs the broken file still produced are updated.

    ``claim`` seeds ownership from the store when flowd starts, so a restart cannot hand a
    contested id to a different file; a seeded owner keeps its ids until it is parsed or deleted.
    """

    def __init__(self) -> None:
        self._owner: dict[str, str] = {}
        self._claims: dict[str, dict[str, dict]] = {}  # file -> dag_id -> serialized; first-parse order
        self._active: dict[str, dict] = {}
        self._parse_errors: dict[str, tuple[str, str]] = {}
        self._reported: dict[str, tuple[str, str]] = {}

    def claim(self, dag_id: str, path: str) -> None:
        """Seed one ownership from the store; what a parse of this process learnt wins."""
        self._owner.setdefault(dag_id, path)

    def owner(self, dag_id: str) -> str | None:
        return self._owner.get(dag_id)

    @property
    def errors(self) -> dict[str, tuple[str, str]]:
        return dict(self._reported)

    def apply(self, results: Mapping[str, FileResult], deleted: Iterable[str] = ()) -> RegistryUpdate:
        gone = set(deleted)
        for path in gone:
            self._claims.pop(path, None)
            self._parse_errors.pop(path, None)
            self._reported.pop(path, None)
        parsed = sorted(set(results) - gone)
        for path in parsed:
            result = results[path]
            claims = {dag["dag_id"]: dag for dag in result.dags}
            if result.error is None:
                self._parse_errors.pop(path, None)
                self._claims[path] = claims
            else:
                self._parse_errors[path] = (str(result.error[0]), str(result.error[1]))
                self._claims[path] = {**self._claims.get(path, {}), **claims}

        owners: dict[str, str] = {}
        for dag_id, path in self._owner.items():
            if path in gone:
                continue
            if path not in self._claims or path in self._parse_errors or dag_id in self._claims[path]:
                owners[dag_id] = path
        for path, claims in self._claims.items():
            for dag_id in claims:
                owners.setdefault(dag_id, path)

        upserts = []
        for dag_id, path in owners.items():
            dag = self._claims.get(path, {}).get(dag_id)
            if dag is not None and self._active.get(dag_id) != dag:
                self._active[dag_id] = dag
                upserts.append(dag)
        deactivated = sorted(dag_id for dag_id in self._owner if dag_id not in owners)
        for dag_id in deactivated:
            self._active.pop(dag_id, None)
        self._owner = owners

        settled = sorted(gone)
        for path in self._claims:
            error = self._error_of(path)
            if path in results or error != self._reported.get(path):
                settled.append(path)
            if error is None:
                self._reported.pop(path, None)
            else:
                self._reported[path] = error
        settled.sort()
        return RegistryUpdate(
            upserts=upserts,
            deactivated=deactivated,
            errors={path: self._reported[path] for path in settled if path in self._reported},
            parsed_files=settled,
        )

    def _error_of(self, path: str) -> tuple[str, str] | None:
        messages, trace = [], ""
        if path in self._parse_errors:
            message, trace = self._parse_errors[path]
            messages.append(message)
        messages += [f"{path}: DAG id '{dag_id}' is already defined in {self._owner[dag_id]}"
                     for dag_id in self._claims[path] if self._owner.get(dag_id) != path]
        return ("\n".join(messages), trace) if messages else None
