"""The beat schedule: what it sends, and what becomes of messages no worker took in time."""

from datetime import timedelta

from django.utils import timezone

from marketplace.celery import app as celery_app

SWEEPERS = [
    "send-unsent-notifications",
    "route-unrouted-orders",
    "expire-unpaid-orders",
    "redrive-stale-schedule-runs",
    "make-overdue-listing-photo-thumbnails",
    "roll-stranded-shipments",
]


def _period(schedule) -> timedelta:
    """The time between two sends of a crontab entry, as beat keeps it."""
    first = timezone.localtime(timezone.now()).replace(second=0, microsecond=0)
    due = [first + timedelta(minutes=m) for m in range(24 * 60)]
    hits = [at for at in due if at.minute in schedule.minute and at.hour in schedule.hour]
    return hits[1] - hits[0]


def test_every_periodic_task_is_registered():
    celery_app.loader.import_default_modules()
    assert [
        name
        for name, entry in celery_app.conf.beat_schedule.items()
        if entry["task"] not in celery_app.tasks
    ] == []


def test_a_sweep_no_worker_took_before_the_next_one_was_sent_is_dropped():
    """Workers down for an hour: beat goes on sending, and each sweep left waiting would
    run when they come back, sixty of them in a row for an every-minute sweeper, the
    routing sweeper sending every late order's message sixty times. The next sweep does
    all a missed one would: a sweep expires when the next is due."""
    for name in SWEEPERS:
        entry = celery_app.conf.beat_schedule[name]
        expires = entry.get("options", {}).get("expires")
        assert expires is not None, name
        assert 0 < expires <= _period(entry["schedule"]).total_seconds(), name


def test_the_nightly_plan_never_expires():
    """Asked for late (workers busy or down at NIGHTLY_SCHEDULE_HOUR), the day is still
    planned: the nightly plan is no sweep that a later one stands in for."""
    entry = celery_app.conf.beat_schedule["schedule-tomorrow"]
    assert "expires" not in entry.get("options", {})


def test_goods_stranded_on_a_day_gone_by_are_swept_hourly():
    """A lost nightly plan, or a route never driven, leaves goods on a day gone by: the
    sweeper moves them on within the hour (and the nightly plan runs it first)."""
    entry = celery_app.conf.beat_schedule["roll-stranded-shipments"]
    assert entry["task"] == "logistics.tasks.roll_stranded_shipments"
    assert _period(entry["schedule"]) == timedelta(hours=1)
