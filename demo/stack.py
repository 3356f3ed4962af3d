"""The demo playground's processes: Redis, Celery workers, the exporter and Prometheus.

The exporter runs as the installed `exporter` package (`python -m exporter` of this Python);
workers and beat import the demo app (`demo.app`) from wherever this `demo` package was
imported from, so nothing assumes where a checkout lives.

Each child runs in its own session (process group), so a Ctrl-C in the terminal reaches only
the demo, which then stops the children in order and kills whatever is left of each group:
nothing outlives the demo.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import redis

from exporter.config import DEFAULT_TRANSIENT_EXCEPTIONS

# Where the `demo` package is importable from: handed to the workers and beat it starts.
IMPORT_ROOT = Path(__file__).resolve().parent.parent
# The shipped rules, when the demo runs beside them (a source tree); --rules overrides.
RULES = IMPORT_ROOT / "deploy" / "prometheus" / "celery-rules.yml"
PROMETHEUS = "/usr/bin/prometheus"
DEMO_DB = 14  # on a shared Redis the demo also prefixes every key with KEYPREFIX
KEYPREFIX = "celery-ops-demo:"
# The demo beat: one healthy and one broken periodic task (the app's heartbeat and export).
BEAT_ENTRIES = (
    {"name": "heartbeat", "task": "demo.heartbeat", "every": 10},
    {"name": "nightly-export", "task": "demo.export", "every": 15},
)


class DemoError(RuntimeError):
    """Something the demo needs is missing or did not start; the message says what to do."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 - loopback URL we built
            return bool(resp.status == 200)
    except OSError:
        return False


class Interrupted(Exception):
    """Ctrl-C/SIGTERM arrived while the stack was starting."""


def wait_until(cond: Callable[[], bool], timeout: float, what: str, proc: Child,
               stop: threading.Event | None = None) -> None:  # fmt: skip
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        if stop is not None and stop.is_set():
            raise Interrupted(what)
        if proc.proc.poll() is not None:
            raise DemoError(f"{what} exited with {proc.proc.returncode}; log: {proc.log}")
        time.sleep(0.2)  # polling interval of a deadline wait
    raise DemoError(f"{what} did not become ready in {timeout:.0f}s; log: {proc.log}")


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    stop_signal: int = signal.SIGTERM

    def stop(self, grace: float = 10.0) -> None:
        """Signal the child, wait, then kill its whole process group (pool children too)."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):  # it exited meanwhile
                os.kill(self.proc.pid, self.stop_signal)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                print(f"demo: {self.name} did not stop in {grace:.0f}s: killing it", flush=True)
        with contextlib.suppress(ProcessLookupError, PermissionError):  # group already empty
            os.killpg(self.proc.pid, signal.SIGKILL)
        if self.proc.poll() is None:
            self.proc.wait(5)


@dataclass
class Stack:
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="celery-demo-")))
    children: list[Child] = field(default_factory=list)
    broker_url: str = ""
    exporter_url: str = ""
    prometheus_url: str = ""
    operator_token: str = ""
    shared_redis: bool = False
    own_redis: bool = False
    stop_event: threading.Event = field(default_factory=threading.Event)

    def spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None,
              stop_signal: int = signal.SIGTERM) -> Child:  # fmt: skip
        log = self.workdir / f"{name}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env={**os.environ, **(env or {})}, cwd=self.workdir, start_new_session=True,
            )  # fmt: skip
        child = Child(name, proc, log, stop_signal)
        self.children.append(child)
        print(f"demo: started {name} (pid {proc.pid})", flush=True)
        return child

    # -- Redis -----------------------------------------------------------------------------
    def start_redis(self, url: str | None, private: bool = False) -> str:
        if url:
            self.broker_url = url
            return url
        if not private and _ping(redis.Redis(port=6379, socket_timeout=1)):
            self.shared_redis = True
            self.broker_url = f"redis://127.0.0.1:6379/{DEMO_DB}"
            return self.broker_url
        server = shutil.which("redis-server")
        if server is None:
            raise DemoError(
                "no Redis on 127.0.0.1:6379 and no redis-server installed: install one "
                "(apt-get install redis-server, brew install redis) or pass --redis-url"
            )
        port = free_port()
        child = self.spawn("redis", [server, "--port", str(port), "--bind", "127.0.0.1",
                                     "--save", "", "--appendonly", "no"])  # fmt: skip
        client = redis.Redis(port=port, socket_timeout=1)
        wait_until(lambda: _ping(client), 15, "redis-server", child, self.stop_event)
        self.broker_url = f"redis://127.0.0.1:{port}/0"
        self.own_redis = True
        return self.broker_url

    def clean_keys(self) -> int:
        """Delete the demo's own keys (SCAN in batches, never KEYS) so runs do not add up."""
        client = redis.Redis.from_url(self.broker_url)
        deleted = 0
        batch: list[bytes] = []
        for key in client.scan_iter(match=f"{KEYPREFIX}*", count=500):
            batch.append(key)
            if len(batch) >= 500:
                deleted += int(client.delete(*batch))
                batch.clear()
        if batch:
            deleted += int(client.delete(*batch))
        if self.shared_redis:
            # kombu keeps this one key unprefixed; it is in the demo's own DB, so it is ours.
            deleted += int(client.delete("_kombu.binding_deadlines"))
        client.close()
        return deleted

    # -- Celery workers and the exporter -------------------------------------------------------
    def app_env(self) -> dict[str, str]:
        return {"DEMO_BROKER_URL": self.broker_url, "DEMO_KEYPREFIX": KEYPREFIX,
                "PYTHONPATH": str(IMPORT_ROOT)}  # fmt: skip

    def start_workers(self, count: int = 2) -> list[Child]:
        workers = []
        for i in range(1, count + 1):
            queues = "demo.default,demo.slow" if i == count else "demo.default"
            argv = [sys.executable, "-m", "celery", "-A", "demo.app",
                    "worker", "-n", f"demo{i}@%h", "-Q", queues, "-c", "2", "-E",
                    "--loglevel", "INFO", "--without-mingle", "--without-gossip"]  # fmt: skip
            # SIGQUIT is Celery's cold shutdown: do not wait for the "stuck" task to finish.
            workers.append(self.spawn(f"worker{i}", argv, self.app_env(), signal.SIGQUIT))
        for child in workers:
            wait_until(lambda c=child: "ready." in c.log.read_text(errors="replace"), 90,  # type: ignore[misc]
                       child.name, child, self.stop_event)  # fmt: skip
        return workers

    def write_beat_schedule(self) -> Path:
        """The demo beat's entries, as the schedule file the exporter reads (and beat too)."""
        path = self.workdir / "beat-schedule.json"
        path.write_text(json.dumps({"entries": list(BEAT_ENTRIES)}, indent=2))
        return path

    def start_beat(self) -> Child:
        """Celery beat with its default file scheduler (state in the demo's work dir)."""
        argv = [sys.executable, "-m", "celery", "-A", "demo.app", "beat",
                "-s", str(self.workdir / "celerybeat-schedule"), "--loglevel", "INFO"]  # fmt: skip
        env = {**self.app_env(), "DEMO_BEAT_FILE": str(self.workdir / "beat-schedule.json")}
        return self.spawn("beat", argv, env)

    def start_exporter(self, port: int, stuck_after: float) -> Child:
        argv = [sys.executable, "-m", "exporter", "--broker-url", self.broker_url,
                "--host", "127.0.0.1", "--port", str(port),
                "--queues", "demo.default,demo.slow,demo.backlog", "--poll-interval", "2",
                "--stuck-after", str(stuck_after), "--success-window", "300",
                "--broker-transport-option", f"global_keyprefix={KEYPREFIX}",
                "--instance", "demo",
                "--beat-schedule-file", str(self.write_beat_schedule()),
                # The demo app's own transient error, so the conservative fix-it retries it.
                "--transient-exceptions",
                ",".join((*DEFAULT_TRANSIENT_EXCEPTIONS, "TransientError"))]  # fmt: skip
        # Throw-away tokens for this playground only, so the operator page can act.
        self.operator_token = secrets.token_urlsafe(16)
        env = {"CE_OPERATOR_TOKENS": self.operator_token}
        child = self.spawn("exporter", argv, env)
        self.exporter_url = f"http://127.0.0.1:{port}"
        wait_until(
            lambda: http_ok(self.exporter_url + "/metrics"), 60, "exporter", child, self.stop_event
        )
        return child

    # -- Prometheus --------------------------------------------------------------------------
    def start_prometheus(self, port: int, exporter_port: int, rules: Path = RULES) -> Child | None:
        if not os.path.exists(PROMETHEUS):
            print(f"demo: {PROMETHEUS} not installed: skipping Prometheus "
                  "(apt-get install prometheus)", flush=True)  # fmt: skip
            return None
        if not rules.exists():
            print(f"demo: {rules} not found (pass --rules): skipping Prometheus", flush=True)
            return None
        shutil.copy(rules, self.workdir / "celery-rules.yml")
        # YAML is a superset of JSON: no YAML library needed to write the config.
        config = {
            "global": {"scrape_interval": "2s", "evaluation_interval": "2s"},
            "rule_files": ["celery-rules.yml"],
            "scrape_configs": [{"job_name": "celery",
                                "static_configs": [{"targets": [f"127.0.0.1:{exporter_port}"]}]}],
        }  # fmt: skip
        (self.workdir / "prometheus.yml").write_text(json.dumps(config, indent=2))
        argv = [PROMETHEUS, f"--config.file={self.workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.workdir / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--storage.tsdb.retention.time=2h"]  # fmt: skip
        child = self.spawn("prometheus", argv)
        self.prometheus_url = f"http://127.0.0.1:{port}"
        wait_until(
            lambda: http_ok(self.prometheus_url + "/-/ready"),
            60,
            "prometheus",
            child,
            self.stop_event,
        )
        return child

    def stop(self, keep_logs: bool = False) -> None:
        # Newest first: Prometheus and the exporter go before the workers and Redis they read.
        for child in reversed(self.children):
            child.stop()
            print(f"demo: stopped {child.name} (exit {child.proc.returncode})", flush=True)
        self.children.clear()
        if self.broker_url and not self.own_redis:  # a private redis-server left with the demo
            try:
                self.clean_keys()
            except redis.RedisError as exc:
                print(f"demo: could not clean demo keys: {exc}", flush=True)
        if keep_logs:
            print(f"demo: logs kept in {self.workdir}", flush=True)
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)


def _ping(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
