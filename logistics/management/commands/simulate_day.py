"""Place a realistic day of orders in the demo county, route them, plan every center's day,
and print a summary per center."""

import argparse
import random
import sys
from collections import Counter
from decimal import Decimal

from django.core.management.base import BaseCommand, CommandError

from listings.models import Listing, ListingStatus
from logistics import demo
from logistics.models import ServiceCenter, Shipment
from logistics.services.routing import order_route
from logistics.services.schedule import schedule_run_execute, schedule_run_request
from marketplace.accounts.models import Role, User
from marketplace.exceptions import DomainError
from orders.services import LineRequest, order_place


def progress(label: str, done: int, total: int, width: int = 30) -> None:
    filled = width * done // max(total, 1)
    sys.stdout.write(f"\r{label:<10} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
    if done >= total:
        sys.stdout.write("\n")
    sys.stdout.flush()


def _at_least_one(typed: str) -> int:
    """argparse's type for --orders: a whole number of orders, 1 or more."""
    try:
        count = int(typed)
    except ValueError:
        count = 0
    if count < 1:
        raise argparse.ArgumentTypeError(f"a whole number of 1 or more, not {typed!r}")
    return count


class Command(BaseCommand):
    help = "Simulate a day: orders placed, routed and every center's day planned."

    def add_arguments(self, parser):
        parser.add_argument(
            "--orders", type=_at_least_one, default=120, help="orders to place (1 or more)"
        )
        parser.add_argument("--seed", type=int, default=None, help="random seed (repeatable runs)")

    def handle(self, *args, orders: int, seed: int | None, **options):
        demo.refuse_unless_allowed()
        rng = random.Random(seed)
        # The demo county's people only: real buyers and farmers sharing the database are
        # neither charged nor told of orders nobody placed, nor is their stock taken.
        buyers = list(
            User.objects.filter(
                role=Role.BUYER, is_active=True, phone__in=demo.demo_phones(Role.BUYER)
            ).select_related("village")
        )
        listings = list(
            Listing.objects.filter(
                status=ListingStatus.ACTIVE, farmer__phone__in=demo.demo_phones(Role.FARMER)
            ).select_related("village")
        )
        if not buyers or not listings:
            raise CommandError("No buyers or listings: run `manage.py seed_demo` first.")
        placed = self._place(rng, buyers, listings, orders)
        for n, order in enumerate(placed, start=1):
            order_route(order_id=order.pk)
            progress("routing", n, len(placed))
        self._plan_and_report(placed)

    def _place(self, rng, buyers, listings, count):
        placed, refused = [], Counter()
        for n in range(1, count + 1):
            buyer = rng.choice(buyers)
            near = [
                x
                for x in listings
                if x.village.service_center_id == buyer.village.service_center_id
            ]
            pool = near if near and rng.random() < 0.7 else listings
            picks = rng.sample(pool, k=min(len(pool), rng.choice([1, 1, 2, 2, 3, 4])))
            lines = [
                LineRequest(
                    listing_id=x.pk,
                    quantity=max(x.min_order_quantity, Decimal(rng.choice([1, 2, 3, 5, 10]))),
                )
                for x in picks
            ]
            try:
                placed.append(
                    order_place(
                        buyer=buyer,
                        lines=lines,
                        payment_method="cod",
                        delivery_method=rng.choice(["home", "home", "home", "pickup"]),
                    )
                )
            except DomainError as exc:
                refused[exc.code] += 1
            progress("ordering", n, count)
        if refused:
            self.stdout.write(f"Refused: {dict(refused)}")
        return placed

    def _plan_and_report(self, placed):
        shipments = Shipment.objects.filter(order__in=placed)
        days = Counter(shipments.values_list("pickup_date", flat=True))
        if not days:
            self.stdout.write("Nothing to plan.")
            return
        day = days.most_common(1)[0][0]
        centers = list(ServiceCenter.objects.order_by("name"))
        runs = []
        for n, center in enumerate(centers, start=1):
            # Carried out here, so a new run gets no task a worker would solve a second time;
            # a run staff asked for already (queued) is joined and carried out here too.
            run = schedule_run_request(center=center, day=day, requested_by=None, enqueue=False)
            runs.append(schedule_run_execute(run_id=run.pk))
            progress("planning", n, len(centers))
        self.stdout.write(f"\nDay {day:%Y-%m-%d}: {len(placed)} orders placed and routed.")
        header = (
            f"{'center':<14}{'orders':>7}{'stops':>7}{'km':>9}{'vehicles':>10}{'unassigned':>12}"
        )
        self.stdout.write(header)
        for run in runs:
            summary = run.summary
            orders_here = (
                shipments.filter(origin_center=run.service_center)
                .values("order")
                .distinct()
                .count()
            )
            unassigned = sum(len(item["shipments"]) for item in summary.get("unassigned", []))
            self.stdout.write(
                f"{run.service_center.name:<14}{orders_here:>7}{summary.get('stops', 0):>7}"
                f"{summary.get('distance_km', 0):>9.1f}"
                f"{summary.get('vehicles_used', 0):>5}/{summary.get('vehicles_available', 0):<4}"
                f"{unassigned:>12}"
            )
