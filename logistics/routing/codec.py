"""Problems and plans as plain JSON data and back, exactly: a zone of a large day is stored
in the database between the task that splits the day and the task that solves the zone,
and its plan until the last zone's task merges them (logistics.services.schedule_zones)."""

from dataclasses import fields, is_dataclass
from enum import Enum
from typing import Any

from logistics.routing.problem import (
    Job,
    JobKind,
    Location,
    PickupDelivery,
    Plan,
    PlannedRoute,
    PlannedStop,
    Problem,
    Skill,
    StepKind,
    TimeWindow,
    Unassigned,
    UnassignedReason,
    VehicleSpec,
)


def to_data(value: Any) -> Any:
    """A Problem or a Plan (or any of their parts) as JSON-ready dicts, lists and scalars."""
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_data(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, frozenset):
        return sorted(to_data(item) for item in value)
    if isinstance(value, list | tuple):
        return [to_data(item) for item in value]
    if isinstance(value, dict):
        return {key: to_data(item) for key, item in value.items()}
    return value


def problem_from_data(data: dict) -> Problem:
    return Problem(
        depot=_location(data["depot"]),
        vehicles=tuple(_vehicle(v) for v in data["vehicles"]),
        jobs=tuple(_job(job) for job in data["jobs"]),
        pairs=tuple(_pair(pair) for pair in data["pairs"]),
    )


def plan_from_data(data: dict) -> Plan:
    return Plan(
        routes=tuple(_route(route) for route in data["routes"]),
        unassigned=tuple(
            Unassigned(
                job_id=item["job_id"],
                reason=UnassignedReason(item["reason"]),
                is_pair=item["is_pair"],
            )
            for item in data["unassigned"]
        ),
        summary=data["summary"],
    )


def _location(data: dict) -> Location:
    return Location(lat=data["lat"], lng=data["lng"])


def _window(data: dict) -> TimeWindow:
    return TimeWindow(start=data["start"], end=data["end"])


def _skills(data: list) -> frozenset[Skill]:
    return frozenset(Skill(skill) for skill in data)


def _vehicle(data: dict) -> VehicleSpec:
    return VehicleSpec(
        id=data["id"],
        capacity_g=data["capacity_g"],
        shift=_window(data["shift"]),
        start=_location(data["start"]),
        end=_location(data["end"]),
        skills=_skills(data["skills"]),
        cost_per_km=data["cost_per_km"],
    )


def _job(data: dict) -> Job:
    return Job(
        id=data["id"],
        kind=JobKind(data["kind"]),
        location=_location(data["location"]),
        amount_g=data["amount_g"],
        service_s=data["service_s"],
        # zones stored before these were kept: a service per job, as they were solved
        setup_s=data.get("setup_s", 0),
        visit=data.get("visit", 0),
        windows=tuple(_window(w) for w in data["windows"]),
        priority=data["priority"],
        skills=_skills(data["skills"]),
    )


def _pair(data: dict) -> PickupDelivery:
    return PickupDelivery(
        id=data["id"],
        pickup=_job(data["pickup"]),
        delivery=_job(data["delivery"]),
        amount_g=data["amount_g"],
        priority=data["priority"],
        skills=_skills(data["skills"]),
    )


def _route(data: dict) -> PlannedRoute:
    departure_s, return_s = data["departure_s"], data["return_s"]
    return PlannedRoute(
        vehicle_id=data["vehicle_id"],
        stops=tuple(
            PlannedStop(
                job_id=stop["job_id"],
                kind=StepKind(stop["kind"]),
                location=_location(stop["location"]),
                arrival_s=stop["arrival_s"],
                service_s=stop["service_s"],
                load_g=stop["load_g"],
                wait_s=stop.get("wait_s", 0),  # plans stored before it was kept
            )
            for stop in data["stops"]
        ),
        departure_s=departure_s,
        return_s=return_s,
        distance_m=data["distance_m"],
        # A plan stored before driving_s was kept had the driving time as its duration.
        duration_s=data["duration_s"] if "driving_s" in data else return_s - departure_s,
        cost=data["cost"],
        driving_s=data.get("driving_s", data["duration_s"]),
    )
