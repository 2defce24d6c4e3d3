"""A center's fleet and the vehicle routes of a day, as ordered stops."""

from decimal import Decimal

from django.db import models
from django.db.models import F, Q

from logistics.models.geography import ServiceCenter, seven_am, six_pm
from logistics.models.shipments import Shipment
from marketplace.text import validate_text_line


class Vehicle(models.Model):
    service_center = models.ForeignKey(
        ServiceCenter, on_delete=models.CASCADE, related_name="vehicles"
    )
    # one line that shows (it heads the route a driver reads, and its map): any form of
    # the model, the admin's too, refuses what the API and the services refuse
    name = models.CharField(max_length=60, validators=[validate_text_line])
    capacity_kg = models.DecimalField(max_digits=8, decimal_places=1)
    refrigerated = models.BooleanField(default=False)
    shift_start = models.TimeField(default=seven_am)
    shift_end = models.TimeField(default=six_pm)
    cost_per_km = models.DecimalField(max_digits=6, decimal_places=2, default=Decimal("1.50"))
    active = models.BooleanField(default=True)

    class Meta:
        ordering = ["service_center_id", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["service_center", "name"], name="vehicle_name_per_center"
            ),
            models.CheckConstraint(
                condition=Q(capacity_kg__gt=0), name="vehicle_capacity_positive"
            ),
            models.CheckConstraint(
                condition=Q(shift_start__lt=F("shift_end")), name="vehicle_shift_order"
            ),
            models.CheckConstraint(
                condition=Q(cost_per_km__gte=0), name="vehicle_cost_not_negative"
            ),
        ]

    def __str__(self) -> str:
        return self.name


class RouteStatus(models.TextChoices):
    PLANNED = "planned"
    STARTED = "started", "On the road"
    COMPLETED = "completed"


class Route(models.Model):
    service_center = models.ForeignKey(
        ServiceCenter, on_delete=models.CASCADE, related_name="routes"
    )
    date = models.DateField()
    schedule_run = models.ForeignKey(
        "ScheduleRun", on_delete=models.SET_NULL, null=True, blank=True, related_name="routes"
    )
    vehicle = models.ForeignKey(
        Vehicle, on_delete=models.PROTECT, null=True, blank=True, related_name="routes"
    )
    status = models.CharField(
        max_length=10, choices=RouteStatus.choices, default=RouteStatus.PLANNED
    )
    distance_km = models.DecimalField(max_digits=8, decimal_places=2, default=0)
    duration_min = models.PositiveIntegerField(
        default=0,
        help_text="From leaving the center to coming back, in minutes: driving, service at "
        "the stops and waiting for their time windows.",
    )
    # Null on routes stored before routes kept it: their driving was not recorded apart.
    driving_s = models.PositiveIntegerField(
        null=True,
        blank=True,
        default=None,
        db_default=None,
        help_text="Of its duration, the seconds driving from the center through its stops "
        "and back.",
    )
    cost = models.DecimalField(max_digits=10, decimal_places=2, default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["date", "id"]
        indexes = [models.Index(fields=["service_center", "date"], name="route_center_day")]

    def __str__(self) -> str:
        return f"Route {self.pk} {self.date}"

    @property
    def driving_min(self) -> int | None:
        return whole_minutes(self.driving_s)


def whole_minutes(seconds: int | None) -> int | None:
    """Seconds as whole minutes, as a run's summary rounds its routes' (None stays None)."""
    return None if seconds is None else round(seconds / 60)


class StopKind(models.TextChoices):
    PICKUP = "pickup"
    DELIVERY = "delivery"


class StopStatus(models.TextChoices):
    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"
    LOCKED = "locked", "Locked for staff review (too many wrong codes)"


class Stop(models.Model):
    route = models.ForeignKey(Route, on_delete=models.CASCADE, related_name="stops")
    sequence = models.PositiveSmallIntegerField()
    kind = models.CharField(max_length=10, choices=StopKind.choices)
    shipments = models.ManyToManyField(Shipment, related_name="stops")
    lat = models.DecimalField(max_digits=9, decimal_places=6)
    lng = models.DecimalField(max_digits=9, decimal_places=6)
    window_start = models.DateTimeField(null=True, blank=True)
    window_end = models.DateTimeField(null=True, blank=True)
    eta = models.DateTimeField(null=True, blank=True)
    load_kg = models.DecimalField(
        max_digits=10, decimal_places=3, default=0, help_text="On board after this stop."
    )
    status = models.CharField(max_length=10, choices=StopStatus.choices, default=StopStatus.PENDING)
    wrong_code_attempts = models.PositiveSmallIntegerField(default=0)
    # The same wrong code sent again (a retry whose answer was lost) is no second guess.
    last_wrong_code = models.CharField(max_length=6, blank=True, default="", db_default="")
    reason = models.CharField(max_length=255, blank=True)
    weight_kg = models.DecimalField(
        max_digits=10, decimal_places=3, null=True, blank=True, help_text="Weighed at pickup."
    )
    occurred_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["route_id", "sequence"]
        constraints = [
            models.UniqueConstraint(fields=["route", "sequence"], name="stop_sequence_unique")
        ]

    def __str__(self) -> str:
        return f"Stop {self.sequence} of route {self.route_id}"


class ScheduleRunStatus(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class ScheduleRun(models.Model):
    """One planning of a center's day: requested by staff or the nightly beat, carried out
    by a worker; its routes replace the day's routes not yet on the road."""

    service_center = models.ForeignKey(
        ServiceCenter, on_delete=models.CASCADE, related_name="schedule_runs"
    )
    date = models.DateField()
    status = models.CharField(
        max_length=10, choices=ScheduleRunStatus.choices, default=ScheduleRunStatus.QUEUED
    )
    progress = models.PositiveSmallIntegerField(default=0, help_text="0 to 100")
    summary = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    requested_by = models.ForeignKey(
        "accounts.User", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    resent_at = models.DateTimeField(
        null=True, blank=True, help_text="when the sweeper last sent its task again"
    )
    restarts = models.PositiveSmallIntegerField(
        default=0,
        db_default=0,
        help_text="times its task started again after one that did not finish (a killed worker)",
    )
    nightly = models.BooleanField(
        default=False,
        db_default=False,
        help_text="the nightly plan of its day (one per center and day)",
    )
    asked_again = models.BooleanField(
        default=False,
        db_default=False,
        help_text="staff asked for its day while it was solving it, after it read the day: "
        "a new run of the day follows it once it is done",
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(progress__lte=100), name="schedulerun_progress_pct"),
            # One run at a time per center and day: a second request joins the first.
            models.UniqueConstraint(
                fields=["service_center", "date"],
                condition=Q(status__in=["queued", "running"]),
                name="schedulerun_one_active_per_day",
            ),
            # The nightly beat plans each day once, however often its message comes.
            models.UniqueConstraint(
                fields=["service_center", "date"],
                condition=Q(nightly=True),
                name="schedulerun_one_nightly_per_day",
            ),
        ]

    def __str__(self) -> str:
        return f"Run {self.pk} {self.service_center_id} {self.date} {self.status}"


class ScheduleRunZone(models.Model):
    """One geographic zone of a large day, solved by a task of its own
    (logistics.services.schedule_zones). Written when the run splits the day: the zone's
    routing problem and the shipments behind its job ids; the plan once the zone is solved.
    The run's zones are all written in one transaction, so their number is the number the
    run waits for."""

    run = models.ForeignKey(ScheduleRun, on_delete=models.CASCADE, related_name="zones")
    index = models.PositiveSmallIntegerField()
    stops = models.PositiveIntegerField()
    problem = models.JSONField(help_text="logistics.routing.Problem as codec.to_data wrote it.")
    shipments = models.JSONField(
        help_text='Shipment ids behind each job id: {"jobs": [[id, [ids]]], "pairs": [...]}.'
    )
    plan = models.JSONField(null=True, blank=True, help_text="Set once, when the zone is solved.")
    solve_seconds = models.FloatField(null=True, blank=True)
    solved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["run_id", "index"]
        constraints = [
            models.UniqueConstraint(fields=["run", "index"], name="schedulerunzone_index_unique")
        ]

    def __str__(self) -> str:
        return f"Zone {self.index} of run {self.run_id}"
