from logistics.models.geography import (
    LAT_VALIDATORS,
    LNG_VALIDATORS,
    ServiceCenter,
    Village,
    coordinate_constraints,
)
from logistics.models.routes import (
    Route,
    RouteStatus,
    ScheduleRun,
    ScheduleRunStatus,
    Stop,
    StopKind,
    StopStatus,
    Vehicle,
)
from logistics.models.shipments import (
    CenterDayLoad,
    LegKind,
    LegStatus,
    Shipment,
    ShipmentLeg,
    ShipmentStatus,
    TrackingEvent,
)

__all__ = [
    "LAT_VALIDATORS",
    "LNG_VALIDATORS",
    "CenterDayLoad",
    "LegKind",
    "LegStatus",
    "Route",
    "RouteStatus",
    "ScheduleRun",
    "ScheduleRunStatus",
    "ServiceCenter",
    "Shipment",
    "ShipmentLeg",
    "ShipmentStatus",
    "Stop",
    "StopKind",
    "StopStatus",
    "TrackingEvent",
    "Vehicle",
    "Village",
    "coordinate_constraints",
]
