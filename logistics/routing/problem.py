"""The vehicle-routing problem and its plan, as plain typed dataclasses.

Nothing here knows Django or the engine: the scheduling service builds a Problem from the
database, `logistics.routing.solve` hands it to the engine (VROOM through pyvroom) and maps
the answer back to a Plan. Times are seconds from midnight of the planned day (local time);
weights are whole grams (the engine's amounts are integers); distances are metres.
"""

from dataclasses import dataclass, field
from enum import StrEnum


@dataclass(frozen=True)
class Location:
    lat: float
    lng: float


@dataclass(frozen=True)
class TimeWindow:
    start: int  # seconds from midnight
    end: int

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise ValueError(f"time window ends before it starts: {self}")


class Skill(StrEnum):
    """What a job may require of a vehicle."""

    REFRIGERATED = "refrigerated"


@dataclass(frozen=True)
class VehicleSpec:
    id: int
    capacity_g: int
    shift: TimeWindow
    start: Location  # the depot: the service center
    end: Location
    skills: frozenset[Skill] = frozenset()
    cost_per_km: float = 1.0


class JobKind(StrEnum):
    PICKUP = "pickup"  # goods taken on board (a farm pickup brought back to the center)
    DELIVERY = "delivery"  # goods loaded at the depot and dropped here


@dataclass(frozen=True)
class Job:
    """One stop to make: a pickup whose goods ride back to the depot, or a delivery whose
    goods leave the depot on board.

    Its time there is `setup_s`, paid when the vehicle comes to it from elsewhere (to park,
    find the farmer, weigh), and `service_s`, paid by every job. Jobs of one kind at one
    location with the same `visit` are one visit when served one after another (a farm's
    shipments solved a stop each; goods of one order for one buyer): the setup is paid by
    the first of them only. Jobs of different visits at one place (two orders for one buyer,
    each its own code) each pay theirs.
    """

    id: int
    kind: JobKind
    location: Location
    amount_g: int
    service_s: int = 300
    windows: tuple[TimeWindow, ...] = ()
    priority: int = 0  # 0..100; higher is served first when not everything fits
    skills: frozenset[Skill] = frozenset()
    setup_s: int = 0
    visit: int = 0


@dataclass(frozen=True)
class PickupDelivery:
    """Goods picked up at one place and delivered at another by the same vehicle, pickup
    first (a same-day farm-to-buyer run inside one center)."""

    id: int
    pickup: Job
    delivery: Job
    amount_g: int
    priority: int = 0
    skills: frozenset[Skill] = frozenset()


@dataclass(frozen=True)
class Problem:
    depot: Location
    vehicles: tuple[VehicleSpec, ...]
    jobs: tuple[Job, ...] = ()
    pairs: tuple[PickupDelivery, ...] = ()


class StepKind(StrEnum):
    PICKUP = "pickup"
    DELIVERY = "delivery"
    PAIR_PICKUP = "pair_pickup"
    PAIR_DELIVERY = "pair_delivery"


@dataclass(frozen=True)
class PlannedStop:
    job_id: int  # a Job id, or a PickupDelivery id for the two pair steps
    kind: StepKind
    location: Location
    arrival_s: int
    service_s: int  # time spent here: its setup (when arriving from elsewhere) and service
    load_g: int  # on board after this stop
    wait_s: int = 0  # from arrival until the window opens: service starts at arrival + wait


@dataclass(frozen=True)
class PlannedRoute:
    vehicle_id: int
    stops: tuple[PlannedStop, ...]
    departure_s: int
    return_s: int
    distance_m: int
    duration_s: int  # from leaving the depot to coming back: driving, service and waiting
    cost: float
    driving_s: int = 0  # of which driving


class UnassignedReason(StrEnum):
    NO_VEHICLE = "no_vehicle"  # there is no vehicle at all (none active, none free that day)
    NO_VEHICLE_WITH_SKILLS = "no_vehicle_with_skills"  # e.g. needs refrigeration, none has it
    TOO_HEAVY = "too_heavy"  # heavier than any single vehicle can carry
    OUTSIDE_SHIFTS = "outside_shifts"  # its time windows fall outside every vehicle's shift
    NO_ROOM = "no_room"  # capacity or time ran out for the day


@dataclass(frozen=True)
class Unassigned:
    job_id: int
    reason: UnassignedReason
    is_pair: bool = False


@dataclass(frozen=True)
class Plan:
    routes: tuple[PlannedRoute, ...]
    unassigned: tuple[Unassigned, ...] = ()
    summary: dict = field(default_factory=dict)  # engine figures: cost, seconds, …
