"""The Celery app: Redis broker, JSON only, late acks; the beat schedule lives here, in code."""

import os

from celery import Celery
from celery.schedules import crontab
from celery.signals import task_postrun, task_prerun
from django.conf import settings

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "marketplace.settings.dev")

app = Celery("marketplace")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
app.autodiscover_tasks(["marketplace"])  # marketplace/tasks.py (the project package is no app)


def send_unless_pending(name: str, args: list, *, pending_seconds: int) -> bool:
    """Send task `name` unless a message sent through here is still waiting for a worker.

    For tasks that serve everything waiting when they run (routing takes the oldest placed
    orders with its own): one message in the queue is enough, and under load most would
    find nothing left to do. The task calls `pending_taken(name)` as it starts, so whatever
    became ready before that is served by it, and what comes later sends a new message. A
    message lost with its flag still set delays the next one by `pending_seconds` at most;
    the sweepers catch the rest. Returns whether it sent."""
    from django.core.cache import cache  # noqa: PLC0415 - Django is set up by then

    key = _pending_key(name)
    if not cache.add(key, 1, timeout=pending_seconds):
        return False
    try:
        app.send_task(name, args=args)
    except BaseException:
        cache.delete(key)  # nothing is pending: the next caller sends
        raise
    return True


def pending_taken(name: str) -> None:
    """A worker has taken task `name`'s message: the next send_unless_pending sends."""
    from django.core.cache import cache  # noqa: PLC0415

    cache.delete(_pending_key(name))


def _pending_key(name: str) -> str:
    return f"task-pending:{name}"


@task_prerun.connect
@task_postrun.connect
def close_old_connections(**kwargs) -> None:
    """Around every task, what Django does around every request: close a connection older
    than CONN_MAX_AGE, broken, or left in a failed state; keep the others."""
    from django.db import close_old_connections  # noqa: PLC0415 - Django is set up by then

    close_old_connections()


# A sweep no worker took before the next one was sent expires (`expires`, its period):
# the next one does all it would have. Workers down for an hour otherwise came back to sixty
# copies of each every-minute sweeper, the routing one sending every late order's message
# sixty times. The nightly plan never expires: late, it still has to run.
app.conf.beat_schedule = {
    "schedule-tomorrow": {
        "task": "logistics.tasks.schedule_tomorrow",
        "schedule": crontab(hour=settings.NIGHTLY_SCHEDULE_HOUR, minute=0),
    },
    "prune-idempotency-records": {
        "task": "marketplace.tasks.prune_idempotency_records",
        "schedule": crontab(minute=23),  # hourly
    },
    "prune-login-logs": {
        "task": "marketplace.accounts.tasks.prune_login_logs",
        "schedule": crontab(hour=3, minute=17),
    },
    "prune-expired-tokens": {
        "task": "marketplace.accounts.tasks.prune_expired_tokens",
        "schedule": crontab(hour=3, minute=29),
    },
    "make-overdue-listing-photo-thumbnails": {
        "task": "listings.tasks.make_overdue_listing_photo_thumbnails",
        "schedule": crontab(minute="*/10"),
        "options": {"expires": 10 * 60},
    },
    "send-unsent-notifications": {
        "task": "orders.notifications.send_unsent_notifications",
        "schedule": crontab(),  # every minute: a lost message or a due retry waits one minute
        "options": {"expires": 60},
    },
    "route-unrouted-orders": {
        "task": "logistics.tasks.sweep_unrouted_orders",
        "schedule": crontab(),  # every minute: a lost routing message costs one minute
        "options": {"expires": 60},
    },
    "redrive-stale-schedule-runs": {
        "task": "logistics.tasks.sweep_stale_schedule_runs",
        "schedule": crontab(minute="*/5"),
        "options": {"expires": 5 * 60},
    },
    "prune-schedule-zones": {
        "task": "logistics.tasks.prune_schedule_zones",
        "schedule": crontab(hour=4, minute=11),
    },
    "roll-stranded-shipments": {
        "task": "logistics.tasks.roll_stranded_shipments",
        "schedule": crontab(minute=37),  # hourly: goods left on a day gone by move on
        "options": {"expires": 60 * 60},
    },
    "flag-late-transfers": {
        "task": "logistics.tasks.flag_late_transfers",
        "schedule": crontab(minute=7),  # hourly
    },
    "expire-unpaid-orders": {
        "task": "orders.tasks.expire_unpaid_orders",
        "schedule": crontab(),  # every minute: an unpaid order holds stock for others
        "options": {"expires": 60},
    },
}
