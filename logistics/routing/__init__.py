"""The vehicle-routing adapter: problem dataclasses in, a plan out (see problem.py)."""

from logistics.routing.engine import EngineError
from logistics.routing.matrix import (
    GreatCircleMatrix,
    Matrices,
    MatrixError,
    MatrixProvider,
    OsrmMatrix,
)
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
from logistics.routing.vroom_solver import solve

__all__ = [
    "EngineError",
    "GreatCircleMatrix",
    "Job",
    "JobKind",
    "Location",
    "Matrices",
    "MatrixError",
    "MatrixProvider",
    "OsrmMatrix",
    "PickupDelivery",
    "Plan",
    "PlannedRoute",
    "PlannedStop",
    "Problem",
    "Skill",
    "StepKind",
    "TimeWindow",
    "Unassigned",
    "UnassignedReason",
    "VehicleSpec",
    "solve",
]
