"""Where Prometheus finds flowd's metrics: an HTTP endpoint and a node_exporter textfile.

The endpoint is served from the engine's asyncio loop, so the collectors read the engine's
state between two ticks and never from another thread. It answers `GET /metrics` (text format,
or OpenMetrics when the scraper asks for it) and nothing else, with HTTP/1.0 semantics: one
request per connection, a 5 s deadline and 8 KiB for the request head, at most 16 scrapes at
once. It is off unless `metrics_listen` names a local address ("127.0.0.1:9464") or a Unix socket
("unix:/run/flowd/metrics.sock"); it is unauthenticated, so bind it where only scrapers reach.

The textfile is for hosts that run node_exporter only: written every `metrics_textfile_interval`
seconds to a temporary file beside the target and renamed over it, so node_exporter never reads
half of it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder, generate_latest

log = logging.getLogger("flow.metrics")

HEAD_LIMIT = 8 * 1024
REQUEST_TIMEOUT = 5.0
MAX_SCRAPES = 16


class ExporterError(Exception):
    """The metrics address cannot be used; the message names the setting and says why."""


@dataclass(frozen=True)
class Address:
    host: str = ""
    port: int = 0
    path: str = ""
    """A Unix socket path; host and port are unused then."""

    def __str__(self) -> str:
        return f"unix:{self.path}" if self.path else f"{self.host}:{self.port}"


def parse_listen(value: str) -> Address:
    """"127.0.0.1:9464", "[::1]:9464", "localhost:9464" or "unix:/path"; ExporterError otherwise."""
    value = value.strip()
    if value.startswith("unix:"):
        path = value[len("unix:"):]
        if not os.path.isabs(path):
            raise ExporterError(f"metrics_listen = {value!r}: a Unix socket needs an absolute path")
        return Address(path=path)
    host, sep, port = value.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ExporterError(f"metrics_listen = {value!r}: expected HOST:PORT (e.g. 127.0.0.1:9464) "
                            "or unix:/absolute/path")
    return Address(host=host, port=int(port))


class Exporter:
    """The HTTP endpoint; `start` binds, `stop` closes; `address` says where it listens."""

    def __init__(self, registry: CollectorRegistry, listen: str, *, group: str = "") -> None:
        self.registry = registry
        self.listen = parse_listen(listen)
        self.group = group
        """Who may scrape a Unix-socket endpoint (mode 0660): this group (flowd's viewer group)."""
        self.address = self.listen
        self._server: asyncio.AbstractServer | None = None
        self._slots = asyncio.Semaphore(MAX_SCRAPES)

    async def start(self) -> None:
        try:
            if self.listen.path:
                with suppress(FileNotFoundError):
                    os.unlink(self.listen.path)
                self._server = await asyncio.start_unix_server(self._handle, path=self.listen.path, limit=HEAD_LIMIT)
                os.chmod(self.listen.path, 0o660)
                if self.group:
                    from ..server import give_to_group

                    give_to_group(self.listen.path, self.group)
            else:
                self._server = await asyncio.start_server(self._handle, self.listen.host, self.listen.port,
                                                          limit=HEAD_LIMIT)
                host, port = self._server.sockets[0].getsockname()[:2]
                self.address = Address(host=self.listen.host, port=port)
        except OSError as exc:
            raise ExporterError(f"metrics_listen = {str(self.listen)!r}: cannot listen: {exc.strerror or exc}") from None
        log.info("metrics on http://%s/metrics", self.address)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)
            self._server = None
            if self.listen.path:
                with suppress(OSError):
                    os.unlink(self.listen.path)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if self._slots.locked():
                await self._reply(writer, 503, b"too many scrapes at once\n")
                return
            async with self._slots:
                try:
                    async with asyncio.timeout(REQUEST_TIMEOUT):
                        head = await reader.readuntil(b"\r\n\r\n")
                except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
                    await self._reply(writer, 400, b"bad request\n")
                    return
                await self._answer(writer, head)
        except (ConnectionError, OSError):
            pass
        except Exception:
            log.exception("metrics: a scrape failed")
        finally:
            writer.close()
            with suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1)

    async def _answer(self, writer: asyncio.StreamWriter, head: bytes) -> None:
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or parts[0] not in ("GET", "HEAD"):
            await self._reply(writer, 405, b"only GET /metrics\n")
            return
        if parts[1].split("?", 1)[0] not in ("/metrics", "/"):
            await self._reply(writer, 404, b"metrics are at /metrics\n")
            return
        accept = next((line.split(":", 1)[1].strip() for line in lines[1:]
                       if line.lower().startswith("accept:")), "")
        encoder, content_type = choose_encoder(accept)
        body = encoder(self.registry)
        await self._reply(writer, 200, b"" if parts[0] == "HEAD" else body, content_type)

    async def _reply(self, writer: asyncio.StreamWriter, status: int, body: bytes,
                     content_type: str = "text/plain; charset=utf-8") -> None:
        reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
                  503: "Service Unavailable"}[status]
        writer.write(f"HTTP/1.0 {status} {reason}\r\nContent-Type: {content_type}\r\n"
                     f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
        await writer.drain()


def write_textfile(registry: CollectorRegistry, path: str) -> None:
    """Collect now (on the caller's thread: the engine's loop) and replace `path` atomically."""
    data = generate_latest(registry)
    folder = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix=".flowd.prom.", dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with suppress(OSError):
            os.unlink(tmp)
        raise


async def textfile_loop(registry: CollectorRegistry, path: str, interval: float) -> None:
    """Write the textfile every `interval` seconds; a failure is logged once until it works again."""
    failing = False
    while True:
        try:
            write_textfile(registry, path)
            if failing:
                log.info("metrics textfile %s is written again", path)
            failing = False
        except OSError as exc:
            if not failing:
                log.warning("cannot write the metrics textfile %s: %s (retrying every %g s)", path,
                            exc.strerror or exc, interval)
            failing = True
        await asyncio.sleep(interval)


class MetricsService:
    """Metrics, the endpoint and the textfile as flowd's main starts and stops them."""

    def __init__(self, engine: Any, server: Any, settings: Any) -> None:
        from prometheus_client import disable_created_metrics

        from .metrics import Metrics

        disable_created_metrics()  # `_created` series double the output and no dashboard reads them
        self.settings = settings
        self.metrics = Metrics(engine, server)
        self.exporter = (Exporter(self.metrics.registry, settings.metrics_listen, group=settings.viewer_group)
                         if settings.metrics_listen else None)
        self._textfile: asyncio.Task[None] | None = None

    @property
    def observe(self) -> Callable[[str, dict[str, Any]], None]:
        return self.metrics.observe

    async def start(self) -> None:
        if self.exporter is not None:
            await self.exporter.start()
        if self.settings.metrics_textfile:
            self._textfile = asyncio.create_task(
                textfile_loop(self.metrics.registry, self.settings.metrics_textfile,
                              self.settings.metrics_textfile_interval), name="flowd-metrics-textfile")

    async def stop(self) -> None:
        if self._textfile is not None:
            self._textfile.cancel()
            await asyncio.gather(self._textfile, return_exceptions=True)
        if self.exporter is not None:
            await self.exporter.stop()
