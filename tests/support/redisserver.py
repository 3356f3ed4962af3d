"""A private redis-server on a free loopback port, for tests and benchmarks."""

from __future__ import annotations

import shutil
import subprocess
import tempfile

from tests.support.common import free_port, wait_for


class RedisServer:
    """A private redis-server on a free loopback port; stop/start keep the data if asked."""

    def __init__(self, persist: bool = False) -> None:
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="ce-redis-")
        self.persist = persist
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self) -> None:
        args = [
            "redis-server",
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            self.dir,
            "--save",
            "",
            "--appendonly",
            "no",
        ]
        if self.persist:
            args[-4:] = ["--save", "", "--appendonly", "yes"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import redis

        client = redis.Redis(port=self.port)
        wait_for(lambda: client.ping(), 10, what=f"redis on {self.port}")
        client.close()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            # SIGTERM: Redis fsyncs its append-only file before exiting, so data is kept.
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def cleanup(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)
