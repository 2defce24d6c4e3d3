"""Reads of logistics, with who may see what."""

from django.contrib.postgres.aggregates import ArrayAgg
from django.db.models import (
    Case,
    Count,
    DecimalField,
    Exists,
    IntegerField,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Coalesce
from django.utils import timezone

from logistics.models import (
    Route,
    ScheduleRun,
    ServiceCenter,
    Shipment,
    ShipmentStatus,
    Stop,
    StopKind,
    StopStatus,
    TrackingEvent,
    Vehicle,
    Village,
)
from marketplace.accounts.models import Role, User
from orders.cash import with_cash_figures
from orders.models import LineStatus, OrderLine


def village_list() -> QuerySet[Village]:
    return Village.objects.select_related("service_center")


def service_center_list() -> QuerySet[ServiceCenter]:
    return ServiceCenter.objects.all()


def shipment_visible_to(user: User) -> QuerySet[Shipment]:
    """Staff of its origin or destination center, its farmer, its buyer; others see none
    (so they get 404). With what the cash-on-delivery rule reads (orders.cash), in the
    same statement, and every stop of the goods, done, failed or to come."""
    return _shipments_visible_to(user, stops=Stop.objects.all())


def _shipments_visible_to(user: User, *, stops: QuerySet[Stop]) -> QuerySet[Shipment]:
    if user.role == Role.STAFF and user.service_center_id is not None:
        visible = Q(origin_center_id=user.service_center_id) | Q(
            destination_center_id=user.service_center_id
        )
    elif user.role == Role.FARMER:
        visible = Q(farmer=user)
    elif user.role == Role.BUYER:
        visible = Q(order__buyer=user)
    else:
        return Shipment.objects.none()
    return (
        with_cash_figures(Shipment.objects.filter(visible))
        .select_related("order")
        .prefetch_related(
            "legs",
            Prefetch("events", queryset=TrackingEvent.objects.order_by("occurred_at", "id")),
            Prefetch("stops", queryset=stops.order_by("route__date", "sequence")),
        )
        .order_by("-pickup_date", "-id")
    )


def pickups_of_farmer(farmer: User) -> QuerySet[Shipment]:
    """A farmer's upcoming pickups: not yet picked up, from today on, each with the pickup
    stop planned for it, if any. Not a pickup that failed (its window has gone by; the goods
    wait for the next try's), nor one left on a route of a day gone by that never set out,
    nor a delivery to the buyer: not the farmer's to wait for."""
    return (
        _shipments_visible_to(
            farmer,
            stops=Stop.objects.filter(
                kind=StopKind.PICKUP,
                status=StopStatus.PENDING,
                route__date__gte=timezone.localdate(),
            ),
        )
        .filter(
            status__in=(ShipmentStatus.PENDING, ShipmentStatus.SCHEDULED),
            pickup_date__gte=timezone.localdate(),
        )
        .order_by("pickup_date", "id")
    )


def stops_of_staff(staff: User) -> QuerySet[Stop]:
    """Stops on the routes of the staff member's center; others' answer 404."""
    return Stop.objects.filter(route__service_center_id=staff.service_center_id)


def vehicles_of_center(user: User, center_id: int) -> QuerySet[Vehicle]:
    """A center's fleet, for the center's own staff; anyone else sees none (so 404)."""
    if user.role != Role.STAFF or user.service_center_id != center_id:
        return Vehicle.objects.none()
    return Vehicle.objects.filter(service_center_id=center_id).order_by("name", "id")


def routes_of_staff(staff: User) -> QuerySet[Route]:
    """Routes of the staff member's center with their center, vehicle and stops in visiting
    order, each stop with its shipment ids: three queries whatever the page holds. Anyone
    else sees none (so a route answers 404)."""
    if staff.role != Role.STAFF or staff.service_center_id is None:
        return Route.objects.none()
    stops = Stop.objects.annotate(
        shipment_ids=ArrayAgg(
            "shipments__id",
            order_by="shipments__id",
            filter=Q(shipments__isnull=False),
            default=Value([]),
        )
    ).order_by("sequence")
    return (
        Route.objects.filter(service_center_id=staff.service_center_id)
        .select_related("service_center", "vehicle")
        .prefetch_related(Prefetch("stops", queryset=stops))
        .order_by("date", "id")
    )


def route_contact_shipments() -> QuerySet[Shipment]:
    """A stop's shipments not cancelled, with what its contacts read (logistics.contacts):
    the farmer and their village, the order, its buyer and delivery village, and what the
    cash to collect is made of (orders.cash.with_cash_figures), in the same statement."""
    return (
        with_cash_figures(Shipment.objects.exclude(status=ShipmentStatus.CANCELLED))
        .select_related("farmer__village", "order__buyer", "order__delivery_village")
        .order_by("id")
    )


def routes_with_contacts_of_staff(staff: User) -> QuerySet[Route]:
    """routes_of_staff, each stop also with the shipments its contacts are made of
    (`contact_shipments`): one query more, whatever the page holds. Goods called off keep
    their stop and its shipment ids, not a contact: nobody is to be met for them."""
    return routes_of_staff(staff).prefetch_related(
        Prefetch(
            "stops__shipments", queryset=route_contact_shipments(), to_attr="contact_shipments"
        )
    )


def load_list_stops(route_id: int) -> QuerySet[Stop]:
    """A route's stops in visiting order with what a load list prints of each shipment not
    cancelled (goods called off after the route set out keep their stop, not their row):
    its order's active lines, its farmer, its buyer and both villages (three queries)."""
    shipments = route_contact_shipments().prefetch_related(
        Prefetch(
            "order__lines",
            queryset=OrderLine.objects.filter(status=LineStatus.ACTIVE).order_by("id"),
        )
    )
    return (
        Stop.objects.filter(route_id=route_id)
        .prefetch_related(Prefetch("shipments", queryset=shipments))
        .order_by("sequence")
    )


def _of_run(rows: QuerySet, run_field: str, figure, output_field) -> Coalesce:
    """One figure of a run's routes or stops (`rows`, by `run_field`), 0 when it has none:
    a subquery of the runs' own statement."""
    per_run = (
        rows.filter(**{run_field: OuterRef("pk")})
        .order_by()
        .values(run_field)
        .annotate(figure=figure)
        .values("figure")
    )
    return Coalesce(
        Subquery(per_run, output_field=output_field), Value(0), output_field=output_field
    )


def _driving_of_run(routes: QuerySet[Route]) -> Case:
    """The driving seconds of a run's routes, 0 when it has none; null when one of them
    has no figure (stored before routes kept it): a sum of the others would pass for the
    run's."""
    whole = IntegerField()
    return Case(
        When(
            Exists(routes.filter(schedule_run=OuterRef("pk"), driving_s__isnull=True)),
            then=Value(None),
        ),
        default=_of_run(routes, "schedule_run", Sum("driving_s"), whole),
        output_field=whole,
    )


def schedule_runs_of_staff(staff: User) -> QuerySet[ScheduleRun]:
    """The runs of the staff member's center (others' answer 404), each with what its
    routes are now (schedule_runs_now)."""
    return schedule_runs_now(ScheduleRun.objects.filter(service_center_id=staff.service_center_id))


def schedule_runs_now(runs: QuerySet[ScheduleRun]) -> QuerySet[ScheduleRun]:
    """The runs, each with what its routes are now (`now_*`), read when asked: goods
    cancelled or turned down after the plan take stops, kilometres and routes off, failed
    stops are counted, and a later plan of the day replaces those not yet on the road. The
    run's `summary` is what the plan made. Driving is in seconds (`now_driving_s`), shown
    in minutes rounded as the summary rounds them (whole_minutes). Subqueries of the runs'
    own statement: as many queries whatever a page holds."""
    routes, stops = Route.objects.all(), Stop.objects.all()
    whole, money = IntegerField(), DecimalField(max_digits=12, decimal_places=2)
    open_stops = Q(status__in=(StopStatus.PENDING, StopStatus.LOCKED))
    return runs.annotate(
        now_routes=_of_run(routes, "schedule_run", Count("pk"), whole),
        now_vehicles_used=_of_run(routes, "schedule_run", Count("vehicle", distinct=True), whole),
        now_distance_km=_of_run(routes, "schedule_run", Sum("distance_km"), money),
        now_duration_min=_of_run(routes, "schedule_run", Sum("duration_min"), whole),
        now_driving_s=_driving_of_run(routes),
        now_cost=_of_run(routes, "schedule_run", Sum("cost"), money),
        now_stops=_of_run(stops, "route__schedule_run", Count("pk"), whole),
        now_stops_open=_of_run(stops, "route__schedule_run", Count("pk", filter=open_stops), whole),
        now_stops_failed=_of_run(
            stops, "route__schedule_run", Count("pk", filter=Q(status=StopStatus.FAILED)), whole
        ),
    )
