"""A center's fleet: vehicles added, changed and retired by the center's staff."""

from collections.abc import Mapping
from datetime import time
from decimal import Decimal
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import F, ProtectedError
from django.db.models.functions import Round
from django.utils import timezone

from logistics.models import Route, RouteStatus, Vehicle
from logistics.services.schedule import schedule_days_again
from marketplace.exceptions import DomainError, violated_constraint
from marketplace.text import check_text_line

# Error codes (stable: clients branch on them). They belong in logistics/errors.py; they
# live here while that module is being edited by the scheduling work.
VEHICLE_NAME_TAKEN = "vehicle_name_taken"
VEHICLE_CAPACITY_OUT_OF_RANGE = "vehicle_capacity_out_of_range"
VEHICLE_COST_NEGATIVE = "vehicle_cost_negative"
VEHICLE_SHIFT_ORDER = "vehicle_shift_order"

MAX_CAPACITY_KG = Decimal(20000)  # a 20-tonne truck is the largest that uses village roads
_NAME_UNIQUE = "vehicle_name_per_center"
UPDATABLE = frozenset(
    {"name", "capacity_kg", "refrigerated", "shift_start", "shift_end", "cost_per_km", "active"}
)
# What a plan relies on: changed, the routes planned onto the vehicle may no longer fit it.
PLANNED_ON = frozenset({"capacity_kg", "refrigerated", "shift_start", "shift_end", "active"})


def vehicle_check(vehicle: Vehicle) -> None:
    """The rules the database also enforces (except the upper capacity bound), checked first
    so each answers with its own code (and the admin's form shows it on its field)."""
    if not 0 < vehicle.capacity_kg <= MAX_CAPACITY_KG:
        raise DomainError(
            VEHICLE_CAPACITY_OUT_OF_RANGE,
            f"capacity_kg must be more than 0 and at most {MAX_CAPACITY_KG}.",
            extra={"field": "capacity_kg"},
        )
    if vehicle.cost_per_km < 0:
        raise DomainError(
            VEHICLE_COST_NEGATIVE, "cost_per_km cannot be negative.", extra={"field": "cost_per_km"}
        )
    if vehicle.shift_start >= vehicle.shift_end:
        raise DomainError(
            VEHICLE_SHIFT_ORDER,
            "shift_start must be before shift_end (a shift does not cross midnight).",
            extra={"field": "shift_end"},
        )


def _name(given: str) -> str:
    """The name as stored: trimmed, one line that shows (it heads the route a driver reads,
    and its map), as the API's TextLineField has it, with its codes."""
    name = given.strip()
    check_text_line(name, field="name")
    return name


def _plan_again_days_of(vehicle: Vehicle) -> list:
    """A plan leaves out a vehicle retired or changed, so its goods go on another vehicle
    or roll to the next day, and no driver sets out with a vehicle the center no longer
    has."""
    return schedule_days_again(
        center=vehicle.service_center, routes=Route.objects.filter(vehicle=vehicle)
    )


def _lock(vehicle_id: int) -> Vehicle:
    """The vehicle row, locked for the rest of the transaction."""
    vehicle = Vehicle.objects.select_for_update(of=("self",)).filter(pk=vehicle_id).first()
    if vehicle is None:  # deleted since the caller looked it up
        raise DomainError("not_found", "No such vehicle.", status_code=404)
    return vehicle


def _save(vehicle: Vehicle, **options: Any) -> None:
    """Save in a savepoint; the unique (center, name) index, not a prior lookup, decides
    whether the name is taken, so two staff naming two vehicles alike cannot both win."""
    try:
        with transaction.atomic():
            vehicle.save(**options)
    except IntegrityError as error:
        if violated_constraint(error) != _NAME_UNIQUE:
            raise
        raise DomainError(
            VEHICLE_NAME_TAKEN,
            f"This center already has a vehicle named {vehicle.name!r}.",
            extra={"field": "name"},
        ) from error


@transaction.atomic
def vehicle_create(
    *,
    center_id: int,
    name: str,
    capacity_kg: Decimal,
    refrigerated: bool = False,
    shift_start: time = time(7, 0),
    shift_end: time = time(18, 0),
    cost_per_km: Decimal = Decimal("1.50"),
    active: bool = True,
) -> Vehicle:
    """Add a vehicle to a center's fleet: capacity above 0 and at most MAX_CAPACITY_KG, a
    shift that starts before it ends, a name of one line that shows (400
    `control_characters_not_allowed` or `blank`) no other vehicle of the center has."""
    vehicle = Vehicle(
        service_center_id=center_id,
        name=_name(name),
        capacity_kg=capacity_kg,
        refrigerated=refrigerated,
        shift_start=shift_start,
        shift_end=shift_end,
        cost_per_km=cost_per_km,
        active=active,
    )
    vehicle_check(vehicle)
    _save(vehicle, force_insert=True)
    return vehicle


@transaction.atomic
def vehicle_update(*, vehicle_id: int, changes: Mapping[str, Any]) -> Vehicle:
    """Change some fields of a vehicle; the rules of vehicle_create hold for the result
    (a new shift_end is checked against the shift_start the vehicle already has). Days it
    is planned on are planned again only when what changed is what plans use; a new price
    per km prices its routes not yet on the road."""
    unknown = set(changes) - UPDATABLE
    if unknown:
        raise TypeError(f"vehicle_update cannot change {sorted(unknown)}")
    vehicle = _lock(vehicle_id)
    # What differs from the row: a retried PATCH, or a whole form sent again, changes
    # nothing, and plans no day again.
    changed = []
    for field, given in changes.items():
        value = _name(given) if field == "name" else given
        if getattr(vehicle, field) != value:
            setattr(vehicle, field, value)
            changed.append(field)
    vehicle_check(vehicle)
    if changed:
        _save(vehicle, update_fields=changed)
    if PLANNED_ON & set(changed):
        _plan_again_days_of(vehicle)
    if "cost_per_km" in changed:
        _price_planned_routes(vehicle)
    return vehicle


def _price_planned_routes(vehicle: Vehicle) -> None:
    """A new price per km plans no day again (the plans do not rest on it) but prices the
    routes not yet on the road, as _store does: their distance at the vehicle's price, to
    the cent. A route on the road, done, or of a day gone by keeps the cost it set out with."""
    Route.objects.filter(
        vehicle=vehicle, status=RouteStatus.PLANNED, date__gte=timezone.localdate()
    ).update(cost=Round(F("distance_km") * vehicle.cost_per_km, 2))


@transaction.atomic
def vehicle_deactivate(*, vehicle_id: int) -> Vehicle | None:
    """Retire a vehicle. One that no route refers to is deleted (returns None); one that
    routes refer to stays, so those routes keep their vehicle, and is deactivated (returned
    with active=False). The row lock holds off a route being planned onto it meanwhile."""
    vehicle = _lock(vehicle_id)
    try:
        with transaction.atomic():
            vehicle.delete()
    except ProtectedError:
        pass
    else:
        return None
    if vehicle.active:
        vehicle.active = False
        vehicle.save(update_fields=["active"])
        _plan_again_days_of(vehicle)
    return vehicle
