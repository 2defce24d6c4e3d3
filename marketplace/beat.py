"""Celery beat that sends only while it holds the database's beat lock.

Every beat sends every periodic task, so two beats against one database ran each one twice:
two launchers with data folders of their own, a beat left running by a deploy that started
the next one, a second replica. `SingleBeatScheduler` takes a PostgreSQL advisory lock
(session-level, on a connection of its own) before it opens its schedule, and sends nothing
until it has it: a second beat waits, logging so, and takes over within
`BEAT_LOCK_POLL_SECONDS` once the first is gone, however it ended (the lock goes with its
session). Before each tick it checks that its session still lives; a session lost (the
database restarted, the connection cut) means another beat may hold the lock by now, so it
waits for the lock again before sending anything more.

Advisory locks belong to one database, so beats of other databases (each test run's) never
meet."""

import hashlib
import logging
import time

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

    def try_acquire(self) -> bool:
        """Take the lock if it is free, on a new session if the last one was lost."""
        if self._db is None:
            self._db = connections.create_connection(self.alias)
        try:
            with self._db.cursor() as cursor:
                cursor.execute("SELECT pg_try_advisory_lock(%s)", [self.key])
                return cursor.fetchone()[0]
        except DatabaseError:
            self.release()  # a lost session holds nothing: the next try opens another
            return False

    def acquire(self, poll_seconds: float) -> None:
        """Wait until the lock is ours, trying again every `poll_seconds`."""
        waiting_since = None
        while not self.try_acquire():
            if waiting_since is None:
                waiting_since = time.monotonic()
                logger.warning(
                    "Another beat holds the beat lock of this database: waiting for it "
                    "(trying every %s s); this beat sends nothing meanwhile",
                    poll_seconds,
                )
            time.sleep(poll_seconds)
        logger.info("This beat holds the beat lock of this database")

    def held(self) -> bool:
        """Whether the session that took the lock still lives (then it still holds it: a
        session-level advisory lock is only given up by its session or its end)."""
        if self._db is None:
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
    """Celery's file scheduler, sending only while this beat holds the beat lock."""

    def __init__(self, *args, **kwargs) -> None:
        self.beat_lock = BeatLock()
        super().__init__(*args, **kwargs)

    def setup_schedule(self) -> None:
        self.beat_lock.acquire(settings.BEAT_LOCK_POLL_SECONDS)
        super().setup_schedule()

    def tick(self, *args, **kwargs):
        if not self.beat_lock.held():
            logger.error("This beat's database session was lost, and the beat lock with it")
            self.beat_lock.acquire(settings.BEAT_LOCK_POLL_SECONDS)
        return super().tick(*args, **kwargs)

    def close(self) -> None:
        super().close()
        self.beat_lock.release()
