"""`/health/`: database, Redis and a Celery worker, each up or down; 200 only when all are up.

The checks themselves are django-health-check's; this view names them and answers 503
(not 500) when one is down, so load balancers and orchestrators read it correctly. The page
answers anyone, so each process checks at most once per HEALTH_CHECK_CACHE_SECONDS and
answers the report it has in between.
"""

import asyncio
import contextlib
import datetime
import logging
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

from django.conf import settings
from django.http import JsonResponse
from health_check.checks import Database
from health_check.contrib.celery import Ping
from health_check.contrib.redis import Redis
from health_check.views import HealthCheckView
from redis.asyncio import Redis as RedisClient

from marketplace.celery import app as celery_app

logger = logging.getLogger(__name__)


class _Report(NamedTuple):
    checked_at: float  # time.monotonic()
    body: dict
    status: int


# The last report of this process. Every call checked afresh: a ping broadcast to every
# worker, a database and a Redis connection, and on a hung server a thread left behind
# each; a loop asking for the page (it needs no login) kept the workers answering pings and
# piled up threads. A report is replaced whole, so threads read one or the other.
_last: _Report | None = None


def _checks() -> dict[str, object]:
    budget = datetime.timedelta(seconds=settings.HEALTH_CHECK_TIMEOUT_SECONDS)
    database = Database()
    redis = Redis(client_factory=lambda: RedisClient.from_url(settings.REDIS_URL))
    # Each check is reported down once its budget (and a second) is spent.
    database.timeout = redis.timeout = budget
    return {
        "database": database,
        "redis": redis,
        # The ping returns on the first answer, or at this timeout; the queue check after it
        # (which queues the worker that answered consumes) returns on that worker's answer,
        # or at Celery's default 1 s, since django-health-check's Ping gives it no timeout of
        # ours.
        "worker": Ping(
            app=celery_app,
            timeout=datetime.timedelta(seconds=settings.HEALTH_CHECK_WORKER_TIMEOUT_SECONDS),
            limit=1,
        ),
    }


class HealthView(HealthCheckView):
    @contextlib.contextmanager
    def get_executor(self) -> Iterator[ThreadPoolExecutor]:
        """Threads for the checks that block (the database, the worker), left behind once
        the page is answered. The event loop's own executor is waited for when the loop
        closes: a server that takes the connection and never answers (a hung PostgreSQL, a
        Redis broker refusing, which Celery's ping retries for seconds) held the answer
        until it gave up, past every budget, though its check was reported down."""
        executor = ThreadPoolExecutor(thread_name_prefix="health-check")
        try:
            yield executor
        finally:
            executor.shutdown(wait=False, cancel_futures=True)

    async def get(self, request, *args, **kwargs):
        """The report of the last HEALTH_CHECK_CACHE_SECONDS, or a new one; its `Age`
        header says how many seconds ago it was checked."""
        global _last  # noqa: PLW0603 - the process's one report
        last = _last
        now = time.monotonic()
        if last is None or now - last.checked_at >= settings.HEALTH_CHECK_CACHE_SECONDS:
            body, status = await self._check()
            last = _last = _Report(time.monotonic(), body, status)
        response = JsonResponse(last.body, status=last.status)
        response["Age"] = str(int(time.monotonic() - last.checked_at))
        return response

    async def _check(self) -> tuple[dict, int]:
        checks = _checks()
        with self.get_executor() as executor:
            results = await asyncio.gather(
                *(check.get_result(executor) for check in checks.values())
            )
        report = {}
        for name, result in zip(checks, results, strict=True):
            if result.error:
                # The whole text (hosts, addresses, ports) goes to the log, not to whoever
                # asks: the page answers anyone.
                logger.warning("health check %s down: %s", name, result.error)
                report[name] = {"status": "down", "error": type(result.error).__name__}
            else:
                report[name] = {"status": "up"}
        healthy = all(item["status"] == "up" for item in report.values())
        return {"status": "up" if healthy else "down", "checks": report}, (200 if healthy else 503)
