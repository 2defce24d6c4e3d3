"""A real Celery worker process for the tests, consuming this test run's own queue."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from django.db import connection

from marketplace.celery import app

BASE_DIR = Path(__file__).resolve().parent.parent


class WorkerProcess:
    """`celery worker` in a subprocess, pointed at the test database and the run's queue."""

    def __init__(self, name: str = "tests") -> None:
        self.hostname = f"{name}-{settings.TEST_RUN_ID}@localhost"
        self.process: subprocess.Popen | None = None
        self.log_path = BASE_DIR / ".data" / f"worker-{settings.TEST_RUN_ID}.log"

    def start(self, timeout: float = 30) -> None:
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "marketplace.settings.test",
            "DATABASE_NAME": connection.settings_dict["NAME"],
            "TEST_RUN_ID": settings.TEST_RUN_ID,
        }
        self.log_path.parent.mkdir(exist_ok=True)
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
                "1",
                "--loglevel",
                "INFO",
                "--without-mingle",
                "--without-gossip",
            ],
            cwd=BASE_DIR,
            env=env,
            stdout=self.log_path.open("ab"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while not app.control.ping(destination=[self.hostname], timeout=0.5):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"Celery worker did not start; see {self.log_path}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
