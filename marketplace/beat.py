"""Celery beat that sends only while it holds the database's beat lock.

Every beat sends every periodic task, so two beats against one database ran each one twice:
two launchers with data folders of their own, a beat left running by a deploy that started
the next one, a second replica. `SingleBeatScheduler` takes a PostgreSQL advisory lock
(session-level, on a connection of its own) and sends nothing until it has it: a second
beat waits, logging so, and takes over within
`BEAT_LOCK_POLL_SECONDS` once the first is gone, however it ended (the lock goes with its
session). Before each tick it checks that its session still lives; a session lost (the
database restarted, the connection cut) means another beat may hold the lock by now, so it
waits for the lock again before sending anything more.

Advisory locks belong to one database, so beats of other databases (each test run's) never
meet."""

import hashlib
import logging

from celery.beat import PersistentScheduler
from django.conf import settings
from django.db import DatabaseError, connections

logger = logging.getLogger(__name__)

# One 64-bit key for "the beat" in any database of this project.
LOCK_KEY = int.from_bytes(
    hashlib.sha256(b"marketplace celery beat").digest()[:8], "big", signed=True
)


class BeatLock:
    """The advisory lock, held by a database session of its own (not Django's connection of
    the thread, which Django may close or share)."""

    def __init__(self, alias: str = "default", key: int = LOCK_KEY) -> None:
        self.alias = alias
        self.key = key
        self._db = None
        self._held = False

    def try_acquire(self) -> bool:
        """Take the lock if it is free, on a new session if the last one was lost."""
        if self._held:
            return True
        if self._db is None:
            self._db = connections.create_connection(self.alias)
        try:
            with self._db.cursor() as cursor:
                cursor.execute("SELECT pg_try_advisory_lock(%s)", [self.key])
                self._held = cursor.fetchone()[0]
        except DatabaseError:
            self.release()  # a lost session holds nothing: the next try opens another
        return self._held

    def held(self) -> bool:
        """Whether this holds the lock, on a session that still lives (a session-level
        advisory lock is only given up by its session or its end)."""
        if not self._held:
            return False
        try:
            with self._db.cursor() as cursor:
                cursor.execute("SELECT 1")
            return True
        except DatabaseError:
            self.release()
            return False

    def release(self) -> None:
        """Give the lock up and end the session. Unlocked first: a closed connection's
        session ends, and frees the lock, a moment after the client has gone on."""
        self._held = False
        if self._db is not None:
            db, self._db = self._db, None
            try:
                with db.cursor() as cursor:
                    cursor.execute("SELECT pg_advisory_unlock_all()")
            except DatabaseError:
                pass  # a session already gone held nothing
            finally:
                db.close()


class SingleBeatScheduler(PersistentScheduler):
    """Celery's file scheduler, sending only while this beat holds the beat lock. A tick
    without it tries for it and, not getting it, sends nothing and asks to be woken again
    in BEAT_LOCK_POLL_SECONDS: the beat waits in its own loop, where a SIGTERM or Ctrl-C
    stops it as any beat (waiting inside the scheduler, Celery's signal handler, which
    syncs the scheduler, would build another and wait again)."""

    def __init__(self, *args, **kwargs) -> None:
        self.beat_lock = BeatLock()
        self._state = "starting"  # "holding", or "waiting" for the lock
        super().__init__(*args, **kwargs)

    def tick(self, *args, **kwargs):
        if not self.beat_lock.held():
            if self._state == "holding":
                logger.error("This beat's database session was lost, and the beat lock with it")
            if not self.beat_lock.try_acquire():
                if self._state != "waiting":
                    logger.warning(
                        "Another beat holds the beat lock of this database: waiting for it "
                        "(trying every %s s); this beat sends nothing meanwhile",
                        settings.BEAT_LOCK_POLL_SECONDS,
                    )
                    self._state = "waiting"
                return settings.BEAT_LOCK_POLL_SECONDS
            logger.info("This beat holds the beat lock of this database")
            self._state = "holding"
        return super().tick(*args, **kwargs)

    def close(self) -> None:
        super().close()
        self.beat_lock.release()
