"""Logistics tasks: each takes ids, loads rows and calls one service; all are idempotent."""

import logging
from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.db import OperationalError, transaction
from django.utils import timezone

from logistics.models import ScheduleRun, ScheduleRunZone, ServiceCenter
from logistics.services.routing import (
    due_for_routing,
    nightly_day,
    orders_give_up_routing,
    orders_route_batch,
)
from logistics.services.schedule import (
    schedule_nightly_request,
    schedule_run_execute,
    schedule_runs_redrive,
)
from logistics.services.schedule_zones import schedule_zone_solve, schedule_zones_prune
from logistics.services.shipments import shipments_flag_late_transfers
from logistics.services.stranded import shipments_roll_stranded
from marketplace.celery import pending_taken
from orders.models import Order, OrderStatus
from orders.services import ROUTE_ORDER_TASK, wake_router

logger = logging.getLogger(__name__)


@shared_task(
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    max_retries=5,
    soft_time_limit=50,
    time_limit=60,
)
def route_order(order_id: int | None) -> int:
    """Create the order's shipments and confirm it, with other orders waiting to be routed
    (up to ROUTING_BATCH in one transaction, oldest first; just those when it is already
    routed or no order is given). Orders placed while this message waited sent none of
    their own (orders' send_unless_pending): a full batch sends the next message, without
    an order, for those still waiting. Returns how many orders this call routed."""
    pending_taken(ROUTE_ORDER_TASK)
    routed = orders_route_batch(order_id=order_id, size=settings.ROUTING_BATCH)
    if len(routed) == settings.ROUTING_BATCH:
        wake_router(None)
    return len(routed)


@shared_task(soft_time_limit=50, time_limit=60)
def sweep_unrouted_orders() -> int:
    """Give up on placed orders no center has had room for since long enough
    (orders_give_up_routing), then re-enqueue those that should have been routed by now: a
    lost message, a Redis restart or a killed worker costs one sweep interval, never an
    order; one whose last try found no room waits ROUTING_RETRY_MINUTES. Batches of
    ROUTING_SWEEP_BATCH walk the orders by id; rows locked by a routing in progress are
    skipped (it is routing them), and route_order is idempotent anyway. Returns how many
    orders it re-enqueued."""
    now = timezone.now()
    orders_give_up_routing(now=now)
    cutoff = now - timedelta(seconds=settings.ROUTING_SWEEP_GRACE_SECONDS)
    last_id, enqueued = 0, 0
    while True:
        with transaction.atomic():
            ids = list(
                Order.objects.select_for_update(skip_locked=True, no_key=True)
                .filter(status=OrderStatus.PLACED, updated_at__lte=cutoff, pk__gt=last_id)
                .filter(due_for_routing(now))
                .order_by("pk")
                .values_list("pk", flat=True)[: settings.ROUTING_SWEEP_BATCH]
            )
            for order_id in ids:
                transaction.on_commit(lambda order_id=order_id: route_order.delay(order_id))
        if not ids:
            return enqueued
        last_id, enqueued = ids[-1], enqueued + len(ids)


@shared_task(soft_time_limit=50, time_limit=60)
def flag_late_transfers() -> int:
    """Transfers not received a day after their date are flagged late."""
    return shipments_flag_late_transfers()


@shared_task(soft_time_limit=240, time_limit=300)
def roll_stranded_shipments() -> int:
    """Hourly: goods left on a day gone by (no plan of it ran, or their route never set out)
    move on to the next day to plan (shipments_roll_stranded). Returns how many moved."""
    return shipments_roll_stranded()


@shared_task(soft_time_limit=240, time_limit=300)
def schedule_center_day(run_id: int) -> str:
    """Plan one center's day (a ScheduleRun); a run already done is left alone, and so is
    one deleted (with its center) after its message was sent."""
    try:
        return schedule_run_execute(run_id=run_id).status
    except ScheduleRun.DoesNotExist:
        return "gone"


@shared_task(soft_time_limit=240, time_limit=300)
def schedule_zone(run_id: int, zone: int) -> str:
    """Solve one zone of a large day (a ScheduleRunZone); the last zone solved stores the
    day's routes. A zone already solved, or a run no longer running, is left alone, and so
    is a zone pruned or deleted with its run after its message was sent."""
    try:
        return schedule_zone_solve(run_id=run_id, zone=zone).status
    except ScheduleRunZone.DoesNotExist:
        return "gone"


@shared_task(soft_time_limit=50, time_limit=60)
def sweep_stale_schedule_runs() -> int:
    """Re-send the task of runs stuck queued or running (a lost message, a killed worker)."""
    return len(schedule_runs_redrive())


@shared_task(soft_time_limit=50, time_limit=60)
def prune_schedule_zones() -> int:
    """Daily: the zones of split runs finished long ago."""
    return schedule_zones_prune()


@shared_task(soft_time_limit=240, time_limit=300)
def schedule_tomorrow() -> int:
    """Nightly: one schedule run per center for tomorrow (nightly_day: today when the
    message is taken after midnight), each its own task, so the centers spread over however
    many workers run; once per center and day, however often this message is delivered.
    Goods left on a day gone by move first, onto the day planned where its nightly plan is
    still to come (shipments_roll_stranded), so tonight's plan takes them; a sweep that
    fails is logged and the plans are asked for all the same (the hourly sweep moves what it
    left, onto a later day). Returns how many runs it asked for."""
    day = nightly_day()
    try:
        shipments_roll_stranded(planning=day)
    except Exception:
        logger.exception("goods stranded on a day gone by not moved before planning %s", day)
    runs = [
        schedule_nightly_request(center=center, day=day)
        for center in ServiceCenter.objects.order_by("pk")
    ]
    return sum(run is not None for run in runs)
