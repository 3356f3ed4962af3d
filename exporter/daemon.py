"""The daemon: wires state, the poll job, the keeper, task sources and HTTP; starts and stops
them.

Listen sockets are bound before anything else starts, so a bad address fails at once with
one line. SIGTERM/SIGINT stop the HTTP servers gracefully, then the scheduler and sources.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import time
from collections.abc import Iterator
from email.utils import formatdate
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import uvicorn

from exporter.celery_io import CeleryIO, CeleryReader
from exporter.clock import Clock
from exporter.config import Config
from exporter.config_checks import ConfigError, parse_listen
from exporter.gcpause import map_large_blocks, settle
from exporter.http import create_app
from exporter.keeper import build_keeper
from exporter.poller import Poller
from exporter.sources import Source, build_sources
from exporter.sources.inspected import InspectedTasks
from exporter.state import State
from exporter.timedjobs import TimedJobs

log = logging.getLogger(__name__)


# uvicorn's main loop wakes every 0.1 s to refresh the Date header (once a second) and check
# for exit: 2.3 ms of CPU per second on an idle exporter (measured per thread, bench/RESULTS.md).
# Even once a second it cost ~0.35 ms/s, a third of an idle exporter. Here the main loop only
# waits for the exit event, and the Date header is refreshed by the requests themselves
# (`_Dated`), to the second, so an idle server never wakes.


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signal handling to the daemon (two may run at once) and
    does not wake while idle."""

    _date_second = -1

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def main_loop(self) -> None:
        self._exit = asyncio.Event()
        if await self.on_tick(0):  # sets the default headers, Date included
            return
        await self._exit.wait()

    def refresh_date(self) -> None:
        """The Date header of this second. uvicorn's request cycles hold the default-headers
        list itself and read it when the response starts, so it is updated in place."""
        now = int(time.time())
        if now == self._date_second:
            return
        self._date_second = now
        headers = self.server_state.default_headers
        if headers and headers[0][0] == b"date":
            headers[0] = (b"date", formatdate(now, usegmt=True).encode())

    def request_exit(self) -> None:
        """Stop serving; called on the server's event loop."""
        self.should_exit = True
        exit_event = getattr(self, "_exit", None)
        if exit_event is not None:
            exit_event.set()


class _Dated:
    """The ASGI app with the server's Date header brought up to date before each request."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.server: _Server | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self.server is not None:
            self.server.refresh_date()
        await self.app(scope, receive, send)


class Daemon:
    def __init__(self, config: Config, clock: Clock | None = None) -> None:
        self.config = config
        self.state = State(config, clock)
        self.io = CeleryIO(config)
        self.poller = Poller(self.state, CeleryReader(self.io))
        self.inspected = InspectedTasks(self.state)  # fed by the poll job, after each poll
        # The keeper of saved state loads before any source counts (its gate) and saves
        # last; it is started and stopped beside the sources, not as one of them.
        self.keeper, gate = build_keeper(self.state)
        self.sources: list[Source] = build_sources(self.state, self.io, gate, self._after_pass)
        self.scheduler = TimedJobs()  # the poll and each service's jobs, a thread each
        # Start-up objects frozen out of the collector's walks (gcpause.settle), after the
        # first poll and the first reconcile pass; run() arms it, so tests that drive a
        # Daemon's jobs never freeze their own process.
        self._settle_after: set[str] = set()
        self._sockets: list[tuple[socket.socket, bool, bool]] = []  # (sock, metrics, api)
        self._servers: list[_Server] = []

    def bind(self) -> None:
        """Bind every listener now, so a busy or wrong address fails before we start."""
        if self.config.api_listen:
            host, port = parse_listen(self.config.api_listen, "--api-listen")
            self._sockets.append(
                (_bind(self.config.host, self.config.port, "--host/--port"), True, False)
            )
            self._sockets.append((_bind(host, port, "--api-listen"), False, True))
        else:
            self._sockets.append(
                (_bind(self.config.host, self.config.port, "--host/--port"), True, True)
            )

    def start_background(self) -> None:
        cfg = self.config
        self.scheduler.add(self._poll, cfg.poll_interval, "poll")
        for service in self._services():
            service.start()
            for func, interval, job_id in service.jobs():
                self.scheduler.add(func, interval, job_id)
        self.scheduler.start()
        log.info(
            "polling %s every %.0fs; sources: %s",
            _redact(cfg.broker_url),
            cfg.poll_interval,
            ", ".join(s.name for s in self.sources) or "none",
        )

    def _services(self) -> list[Source]:
        """The keeper first (its load opens the gate), then the task sources."""
        return [self.keeper, *self.sources] if self.keeper else list(self.sources)

    def _poll(self) -> None:
        try:
            snap = self.poller.poll()
            self.inspected.run()
            self.state.trends.sample(self.state.clock.time(), self.state.ledger, snap)
        except Exception:
            # A bug, not an outage (those are handled inside): log it, keep polling.
            log.exception("poll failed unexpectedly")
        self._settle("poll")

    def _after_pass(self) -> None:
        """After each complete reconcile pass: the keeper saves (and the first settles)."""
        if self.keeper:
            self.keeper.save()
        self._settle("reconcile")

    def _settle(self, after: str) -> None:
        if after in self._settle_after:
            self._settle_after.discard(after)
            settle()

    def stop_background(self) -> None:
        self.scheduler.stop()
        # Sources first, the keeper last: its final save includes what they flushed.
        stopping = [*self.sources, self.keeper] if self.keeper else self.sources
        for service in stopping:
            try:
                service.stop()
            except Exception:
                log.exception("stopping %s failed", service.name)
        self.io.close()

    def run(self) -> int:
        map_large_blocks()  # freed ledger tables go back to the system (gcpause.py)
        self._settle_after = {"poll", "reconcile"}
        self.start_background()
        try:
            asyncio.run(self._serve())
        finally:
            self.stop_background()
        log.info("stopped")
        return 0

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        for sock, metrics, api in self._sockets:
            app = _Dated(create_app(self.state, self.io, metrics=metrics, api=api))
            server = _Server(
                uvicorn.Config(
                    app,
                    log_config=None,
                    access_log=False,
                    lifespan="off",
                    timeout_graceful_shutdown=5,
                )
            )
            app.server = server
            self._servers.append(server)
            host, port = sock.getsockname()[:2]
            log.info(
                "listening on http://%s:%s (%s)",
                host,
                port,
                "+".join(n for n, on in (("metrics", metrics), ("api", api)) if on),
            )
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.shutdown)
        await asyncio.gather(
            *(
                server.serve(sockets=[sock])
                for server, (sock, _m, _a) in zip(self._servers, self._sockets, strict=True)
            )
        )

    def shutdown(self) -> None:
        log.info("shutting down")
        for server in self._servers:
            server.request_exit()


def _bind(host: str, port: int, flag: str) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio turns on TCP_NODELAY only for sockets whose proto says TCP;
    # without it every keep-alive scrape waited ~40 ms for a delayed ACK (Nagle).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"{flag}: cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def _redact(url: str) -> str:
    """The URL with any password replaced, for logs."""
    parts = urlsplit(url.split(";", 1)[0])
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url.split(";", 1)[0]
