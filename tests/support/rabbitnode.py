"""A private RabbitMQ node for tests that stop and start the broker.

It runs beside the shared node on 5672 and never touches it: its own node name, AMQP port and
distribution port (free loopback ports), its own config (so the shared /etc config with its
5672 listener is not read), data, logs and Erlang cookie in a temp dir, and no plugins. It
registers with the host's epmd like any node; nothing else is shared.

Run as root, Debian's `rabbitmq-server` wrapper switches to the `rabbitmq` user, which cannot
write a test's temp dir; the scripts it wraps are run directly instead.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

from tests.support.common import free_port, wait_for

# Where Debian's package keeps the unwrapped scripts; override with RABBITMQ_SCRIPTS_DIR.
SCRIPTS_DIR = Path(os.environ.get("RABBITMQ_SCRIPTS_DIR", "/usr/lib/rabbitmq/bin"))


def _script(name: str) -> str | None:
    direct = SCRIPTS_DIR / name
    if os.geteuid() == 0 and direct.exists():
        return str(direct)
    return shutil.which(name)


def available() -> bool:
    return _script("rabbitmq-server") is not None and _script("rabbitmqctl") is not None


class RabbitNode:
    def __init__(self) -> None:
        self.port = free_port()
        self.dist_port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="ce-rabbit-"))
        self.name = f"ce-test-{uuid.uuid4().hex[:8]}@localhost"
        self.proc: subprocess.Popen[bytes] | None = None
        (self.dir / "home").mkdir()
        (self.dir / "rabbitmq.conf").write_text(f"listeners.tcp.local = 127.0.0.1:{self.port}\n")
        (self.dir / "rabbitmq-env.conf").write_text("")
        (self.dir / "enabled_plugins").write_text("[].\n")

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}//"

    def _env(self) -> dict[str, str]:
        d = self.dir
        return {
            **os.environ,
            "HOME": str(d / "home"),  # the Erlang cookie of this node and of rabbitmqctl
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_CONFIG_FILE": str(d / "rabbitmq.conf"),
            "RABBITMQ_CONF_ENV_FILE": str(d / "rabbitmq-env.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(d / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(d / "mnesia"),
            "RABBITMQ_LOG_BASE": str(d / "log"),
            "RABBITMQ_PID_FILE": str(d / "pid"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
        }

    def log(self) -> str:
        path = self.dir / "server.out"
        return path.read_text(errors="replace") if path.exists() else ""

    def start(self, timeout: float = 150.0) -> None:
        """Boot (seconds when idle, up to a minute on a busy machine); wait for AMQP."""
        server = _script("rabbitmq-server")
        assert server is not None
        with open(self.dir / "server.out", "ab") as out:
            self.proc = subprocess.Popen(
                [server],
                env=self._env(),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, so cleanup reaches every child
            )

        def listening() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"rabbitmq-server exited:\n{self.log()[-3000:]}")
            with socket.create_connection(("127.0.0.1", self.port), 1):
                return True

        wait_for(listening, timeout, interval=0.5, what=f"private RabbitMQ on {self.port}")

    def stop(self) -> None:
        """A clean stop (`rabbitmqctl stop`): queues and persistent messages survive."""
        if self.proc is None or self.proc.poll() is not None:
            self.proc = None
            return
        ctl = _script("rabbitmqctl")
        assert ctl is not None
        subprocess.run(
            [ctl, "-n", self.name, "stop"],
            env=self._env(),
            capture_output=True,
            timeout=120,
            check=False,
        )
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self._kill()
        self.proc = None

    def _kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)  # the group this node started in
            self.proc.wait(20)

    def cleanup(self) -> None:
        try:
            self.stop()
        finally:
            self._kill()
            shutil.rmtree(self.dir, ignore_errors=True)
