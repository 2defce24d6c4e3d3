"""`/health/` against the real PostgreSQL, Redis and a real Celery worker process."""

import socket
import threading
import time
import uuid

import pytest
from django.db import connection

from marketplace import health
from marketplace.celery import app as celery_app
from marketplace.tasks import ping

pytestmark = pytest.mark.django_db(transaction=True)


def closed_port() -> int:
    import socket  # noqa: PLC0415

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens once the socket closes


def test_a_task_runs_in_a_real_worker(celery_worker):
    token = uuid.uuid4().hex
    result = ping.delay(token)
    assert result.get(timeout=20) == {"pong": token}


def test_health_all_up(api, celery_worker):
    response = api.get("/health/")
    assert response.status_code == 200, response.json()
    assert response.json() == {
        "status": "up",
        "checks": {
            "database": {"status": "up"},
            "redis": {"status": "up"},
            "worker": {"status": "up"},
        },
    }


def test_health_all_up_answers_once_the_worker_answered_without_waiting_out_a_timeout(
    api, celery_worker, settings
):
    """Both questions to the worker return on its answer, not at the timeout: the ping on
    the first worker's answer (`limit=1`), the queue check once the workers it asks have
    answered (kombu limits a broadcast to named workers to their number). Polled every
    few seconds, a check that waited out its timeout would hold a web thread each time."""
    settings.HEALTH_CHECK_WORKER_TIMEOUT_SECONDS = 10.0
    assert api.get("/health/").status_code == 200  # the worker's first answers are slower
    started = time.monotonic()
    response = api.get("/health/")
    elapsed = time.monotonic() - started
    assert response.status_code == 200
    assert elapsed < 0.9, f"{elapsed:.2f} s: a question to the worker waited out a timeout"


def test_health_redis_down(api, celery_worker, settings):
    settings.REDIS_URL = f"redis://127.0.0.1:{closed_port()}/0"
    response = api.get("/health/")
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["redis"]["status"] == "down"
    assert (checks["database"]["status"], checks["worker"]["status"]) == ("up", "up")


@pytest.fixture
def no_health_report_yet():
    health._last = None
    yield
    health._last = None


def test_health_answers_its_last_report_until_its_time_is_up(
    api, celery_worker, settings, no_health_report_yet
):
    """The page needs no login, and each check pinged every worker and opened a database
    and a Redis connection (leaving a thread behind on a hung server): a loop asking for it
    kept the workers answering. A process now answers its last report for
    HEALTH_CHECK_CACHE_SECONDS, saying how old it is, a down one as an up one."""
    settings.HEALTH_CHECK_CACHE_SECONDS = 60.0
    assert api.get("/health/").status_code == 200
    redis_url, settings.REDIS_URL = settings.REDIS_URL, f"redis://127.0.0.1:{closed_port()}/0"
    again = api.get("/health/")  # Redis is down now, and not asked
    assert (again.status_code, again.json()["status"], again["Age"]) == (200, "up", "0")

    settings.HEALTH_CHECK_CACHE_SECONDS = 0.0  # its time is up: checked afresh
    down = api.get("/health/")
    assert (down.status_code, down.json()["checks"]["redis"]["status"]) == (503, "down")

    settings.HEALTH_CHECK_CACHE_SECONDS = 60.0
    settings.REDIS_URL = redis_url  # up again, not asked either
    still = api.get("/health/")
    assert (still.status_code, still.json()["checks"]["redis"]["status"]) == (503, "down")


def test_health_database_down(api, celery_worker, monkeypatch):
    # A real failed connection: the settings now name a database that does not exist.
    monkeypatch.setitem(connection.settings_dict, "NAME", "no_such_database_for_health")
    connection.close()
    response = api.get("/health/")
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["database"] == {"status": "down", "error": "ServiceUnavailable"}
    assert "no_such_database_for_health" not in response.content.decode()  # nor a host
    assert (checks["redis"]["status"], checks["worker"]["status"]) == ("up", "up")
    monkeypatch.undo()
    connection.close()


def test_health_answers_in_time_when_the_database_takes_the_connection_and_never_answers(
    api, celery_worker, settings, monkeypatch
):
    """A PostgreSQL that hangs (or a proxy in front of a dead one) takes the connection and
    never answers. The check is reported down at its budget and the page answers then: the
    check's thread, still waiting, is not waited for. It held the page until the server
    answered, forever here, past the compose health check's 5 s and gunicorn's timeout."""
    settings.HEALTH_CHECK_TIMEOUT_SECONDS = 2.0
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # the kernel takes connections; nothing ever reads or answers them
        monkeypatch.setitem(connection.settings_dict, "HOST", "127.0.0.1")
        monkeypatch.setitem(connection.settings_dict, "PORT", str(silent.getsockname()[1]))
        monkeypatch.setitem(connection.settings_dict, "OPTIONS", {})
        connection.close()
        # Ends the waiting connection (a reset), so a page that waits for it still answers.
        give_up = threading.Timer(20, silent.close)
        give_up.start()
        try:
            started = time.monotonic()
            response = api.get("/health/")
            elapsed = time.monotonic() - started
        finally:
            give_up.cancel()
    monkeypatch.undo()
    connection.close()
    assert elapsed < 4.5, f"{elapsed:.1f} s: the page waited for the hung check"
    assert response.status_code == 503
    assert response.json()["checks"] == {
        "database": {"status": "down", "error": "ServiceUnavailable"},
        "redis": {"status": "up"},
        "worker": {"status": "up"},
    }


def test_health_worker_down_when_no_worker_consumes_our_queue(api, celery_worker, monkeypatch):
    monkeypatch.setitem(celery_app.conf, "task_default_queue", f"nobody-{uuid.uuid4().hex}")
    response = api.get("/health/")
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["worker"]["status"] == "down"
    assert checks["worker"]["error"] == "ServiceUnavailable"  # its whole text is logged
    assert (checks["database"]["status"], checks["redis"]["status"]) == ("up", "up")


def test_health_worker_down_when_the_worker_is_stopped(api, celery_worker):
    celery_worker.stop()
    try:
        response = api.get("/health/")
        assert response.status_code == 503
        assert response.json()["checks"]["worker"]["status"] == "down"
    finally:
        celery_worker.start()
    assert api.get("/health/").status_code == 200
