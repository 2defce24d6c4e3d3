"""One beat per database: the beat lock (marketplace/beat.py), on real PostgreSQL sessions and
real `celery beat` processes."""

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from marketplace.beat import BeatLock, SingleBeatScheduler
from marketplace.celery import app as celery_app

BASE_DIR = Path(__file__).resolve().parent.parent.parent
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def locks():
    made = []

    def make() -> BeatLock:
        made.append(BeatLock())
        return made[-1]

    yield make
    for lock in made:
        lock.release()


def _backend_pid(lock: BeatLock) -> int:
    with lock._db.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def test_only_one_session_holds_the_beat_lock(locks):
    first, second = locks(), locks()
    assert first.try_acquire() is True
    assert second.try_acquire() is False
    assert first.held() is True
    first.release()
    assert second.try_acquire() is True
    assert first.try_acquire() is False


def test_a_beat_whose_session_was_lost_knows_it_no_longer_holds_the_lock(locks):
    """The database restarted or cut the connection: the lock went with the session, and
    another beat may take it; the first must wait for it again before it sends."""
    first, second = locks(), locks()
    assert first.try_acquire() is True
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s, 5000)", [_backend_pid(first)])
    assert first.held() is False
    assert second.try_acquire() is True
    assert first.try_acquire() is False  # on a new session: the lock is the second's now
    second.release()
    assert first.try_acquire() is True


def test_a_beat_sends_only_while_it_holds_the_lock_and_waits_again_once_its_session_is_lost(
    locks, settings, tmp_path, monkeypatch
):
    """A tick without the lock sends nothing and asks to be woken in BEAT_LOCK_POLL_SECONDS;
    one that gets it sends what is due. A beat whose session was lost (the database
    restarted) no longer holds it, and another beat may have taken it meanwhile."""
    settings.BEAT_LOCK_POLL_SECONDS = 0.25
    scheduler = SingleBeatScheduler(
        app=celery_app, schedule_filename=str(tmp_path / "schedule"), lazy=False
    )
    sent = []
    monkeypatch.setattr(scheduler, "apply_async", lambda entry, **kw: sent.append(entry.name))
    for entry in scheduler.schedule.values():  # every periodic task due now
        entry.last_run_at = entry.last_run_at - timedelta(days=2)
    other = locks()
    try:
        assert other.try_acquire() is True
        assert scheduler.tick() == 0.25
        assert (sent, scheduler.beat_lock.held()) == ([], False)  # another beat's turn

        other.release()
        scheduler.tick()
        assert scheduler.beat_lock.held() is True
        assert sent != []  # what was due went, once this beat held the lock
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_terminate_backend(%s, 5000)", [_backend_pid(scheduler.beat_lock)]
            )
        assert other.try_acquire() is True  # the lock went with the session
        sent.clear()
        for entry in scheduler.schedule.values():
            entry.last_run_at = entry.last_run_at - timedelta(days=2)
        assert scheduler.tick() == 0.25
        assert (sent, scheduler.beat_lock.held()) == ([], False)

        other.release()
        scheduler.tick()
        assert scheduler.beat_lock.held() is True
        assert sent != []
    finally:
        scheduler.close()


def _read(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def _wait_for(path: Path, text: str, process: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while text not in _read(path):
        if process.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"{text!r} not in the beat's log:\n{_read(path)}")
        time.sleep(0.1)


def _beat(tmp_path: Path, name: str) -> tuple[subprocess.Popen, Path]:
    log = tmp_path / f"{name}.log"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "marketplace.settings.test",
        "DATABASE_NAME": connection.settings_dict["NAME"],
        "TEST_RUN_ID": settings.TEST_RUN_ID,
        "BEAT_LOCK_POLL_SECONDS": "0.2",
    }
    process = subprocess.Popen(  # noqa: S603
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "marketplace",
            "beat",
            "--loglevel",
            "INFO",
            "--schedule",
            str(tmp_path / f"{name}-schedule"),
        ],
        cwd=BASE_DIR,
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return process, log


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def test_a_second_beat_on_the_same_database_waits_and_takes_over_once_the_first_is_gone(
    tmp_path,
):
    """Two beats against one database (two launchers with data folders of their own, a
    deploy's old and new beat) sent every periodic task twice. The second now waits and
    takes over once the first is gone, even killed outright; a waiting beat stops on
    SIGTERM as any beat does."""
    first, first_log = _beat(tmp_path, "first")
    second = third = None
    try:
        _wait_for(first_log, "This beat holds the beat lock", first)
        second, second_log = _beat(tmp_path, "second")
        third, third_log = _beat(tmp_path, "third")
        _wait_for(second_log, "waiting for it", second)
        _wait_for(third_log, "waiting for it", third)
        time.sleep(1)  # five of their tries
        assert "This beat holds the beat lock" not in _read(second_log)

        third.send_signal(signal.SIGTERM)  # a deploy stopping a beat that waits
        assert third.wait(timeout=15) == 0

        _stop(first)  # SIGKILL: no clean-up; the lock goes with its session
        _wait_for(second_log, "This beat holds the beat lock", second)
    finally:
        for process in (first, second, third):
            if process is not None:
                _stop(process)
