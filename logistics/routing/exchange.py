"""Work one zone left out, offered to another zone whose routes stop at its place anyway, or
which has a vehicle with nothing to do.

Each zone of a split day (logistics.routing.zones) is solved alone, so the engine's rule of
serving the higher priority first holds within a zone, not across zones: a farm's
perishables could be left out for want of room in their zone while a vehicle of another
zone stopped at that same farm (a pair's pickup takes it there) and carried goods that keep
from elsewhere, as heavy or heavier; or for want of room in their zone while a vehicle of
another zone, which its own zone did not need, stayed at the center. `exchange` offers each
plain zone, in turn, what the other plain zones left out at the places its routes stop at
(all of it, when one of its vehicles has no route), and solves it again with that work
added; the new plan replaces the zone's only if it serves more priority, or as much
and more stops (logistics.routing.improve's order), so the goods that keep may make way for
the perishables, never the other way round. The work taken moves to that zone; what the
zone leaves out now stays in it, left out, for the next zone's offer and the refrigerated
vehicles' (zones.second_pass). What a later zone leaves out (its own goods that keep, making
way for another zone's perishables) is offered to the zones before it in another pass, and
so on while a pass takes something and the time allows, never to the zone it just left.

Only places a route stops at anyway, or a vehicle left idle: that keeps the solves to the
zones where taking the work can pay, on a large day too. Nothing here knows
Django or the engine (it is handed a solve function)."""

import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import NamedTuple

from logistics.routing.problem import Location, Plan, Problem
from logistics.routing.zones import (
    SecondPass,
    _cold_zone,
    _key,
    _served,
    _unassigned,
    _with_left_out,
    second_pass,
)


class Exchange(NamedTuple):
    zones: list[Problem]  # the work taken moved to the zone that serves it now
    plans: list[Plan]  # plans[i] solves zones[i]
    offered: int  # left-out work offered to another zone (each time it was offered)
    taken: int  # of it, how much another zone serves now


def exchange(
    zones: Sequence[Problem],
    plans: Sequence[Plan],
    solve: Callable[[Problem], Plan],
    *,
    deadline: float | None = None,
) -> Exchange:
    """The zones and their plans once each plain zone, in order, was offered the work the
    other plain zones left out at the places its routes stop at, or all of it when one of
    its vehicles has no route (see the module); again, pass after pass, while a pass took
    something and, with a `deadline` (time.monotonic()), another pass as long as the last
    still leaves as much time to the refrigerated vehicles' pass after it."""
    if len(zones) != len(plans):
        raise ValueError(f"{len(zones)} zones but {len(plans)} plans")
    zones, plans = list(zones), list(plans)
    cold = _cold_zone(zones)
    plain = [z for z in range(len(zones)) if z != cold and zones[z].vehicles]
    offered = taken = 0
    left_from: dict[tuple[bool, int], int] = {}  # work moved: the zone it last left
    declined: dict[int, set[tuple[bool, int]]] = {}  # a zone's last offer, not taken
    # No cycle: a zone's plan is replaced only when it serves more priority, or as much and
    # more stops, of its work widened by the offer (_score), while the zones the work came
    # from serve what they served (only their left-out work goes). So the day's (priority
    # served, stops served) grows strictly with every plan replaced; it is bounded by the
    # day's work, so only finitely many passes take something, and the first that takes
    # nothing (or the deadline) ends the exchange. A zone is not solved again for the same
    # offer while its work is the same (declined: the answer would be the same), nor offered
    # work it just gave away (left_from: the zone it last left).
    while True:
        started, took = time.monotonic(), 0
        for z in plain:
            stops_at = {stop.location for route in plans[z].routes for stop in route.stops}
            idle = {v.id for v in zones[z].vehicles} - {
                route.vehicle_id for route in plans[z].routes
            }
            offer = {
                _key(item): y
                for y in plain
                if y != z
                for item in plans[y].unassigned
                if left_from.get(_key(item)) != z
                and (idle or _place(zones[y], _key(item)) in stops_at)
            }
            if not offer or declined.get(z) == set(offer):
                continue
            offered += len(offer)
            widened = _with_left_out(zones, z, set(offer))
            again = solve(widened)
            if _score(widened, again) <= _score(zones[z], plans[z]):
                declined[z] = set(offer)
                continue
            moved = _served(again) & set(offer)
            took += len(moved)
            declined.pop(z, None)
            zones[z] = _without(widened, set(offer) - moved)
            plans[z] = _unassigned(again, [i for i in again.unassigned if _key(i) not in offer])
            for key in moved:
                left_from[key] = offer[key]
            for y in sorted({offer[key] for key in moved}):
                declined.pop(y, None)  # its work is less: an offer may fit it now
                zones[y] = _without(zones[y], moved)
                still = [item for item in plans[y].unassigned if _key(item) not in moved]
                plans[y] = _unassigned(plans[y], still)
        taken += took
        now = time.monotonic()
        if not took or (deadline is not None and now + 2 * (now - started) > deadline):
            return Exchange(zones, plans, offered, taken)


def after_zones(
    zones: Sequence[Problem],
    plans: Sequence[Plan],
    solve: Callable[[Problem], Plan],
    *,
    deadline: float | None = None,
) -> tuple[Exchange, SecondPass]:
    """What a split day does once its zones are solved: the exchange between the plain
    zones (passes while `deadline` allows: the one `solve` stops the engine by), then the
    second pass (what is still left out, offered to the refrigerated vehicles).
    `second.plans` are the day's plans, for `merge`."""
    swap = exchange(zones, plans, solve, deadline=deadline)
    return swap, second_pass(swap.zones, swap.plans, solve)


def _place(zone: Problem, key: tuple[bool, int]) -> Location:
    """Where a vehicle first goes for the job or pair `key` of the zone."""
    is_pair, job_id = key
    if is_pair:
        return next(pair.pickup.location for pair in zone.pairs if pair.id == job_id)
    return next(job.location for job in zone.jobs if job.id == job_id)


def _without(zone: Problem, keys: set[tuple[bool, int]]) -> Problem:
    return replace(
        zone,
        jobs=tuple(j for j in zone.jobs if (False, j.id) not in keys),
        pairs=tuple(p for p in zone.pairs if (True, p.id) not in keys),
    )


def _score(zone: Problem, plan: Plan) -> tuple[int, int]:
    """Priority served, then stops served (a pair is two), of the zone's work."""
    priority = {(False, j.id): j.priority for j in zone.jobs} | {
        (True, p.id): p.priority for p in zone.pairs
    }
    served = _served(plan) & priority.keys()
    return sum(priority[key] for key in served), sum(2 if key[0] else 1 for key in served)
