from decimal import Decimal

from django_filters import rest_framework as filters
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import mixins, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.generics import ListAPIView
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle
from rest_framework.views import APIView

from logistics import selectors
from logistics.contacts import stop_cash_collected
from logistics.models import Shipment, ShipmentStatus, Stop
from logistics.services.fleet import MAX_CAPACITY_KG
from logistics.services.shipments import (
    Completion,
    shipment_hand_over,
    shipment_receive,
    stop_complete,
)
from marketplace.accounts.models import Role
from marketplace.api.filters import IdFilter
from marketplace.api.permissions import IsCenterStaff, IsFarmer
from marketplace.api.serializers import TextLineField
from marketplace.exceptions import DomainError
from orders.api.serializers import ShipmentLegSerializer, TrackingEventSerializer
from orders.cash import CashLedger
from orders.models import DeliveryMethod


class StopWindowSerializer(serializers.ModelSerializer):
    class Meta:
        model = Stop
        fields = ("id", "kind", "window_start", "window_end", "eta", "status")
        read_only_fields = fields


class ShipmentSerializer(serializers.ModelSerializer):
    legs = ShipmentLegSerializer(many=True, read_only=True)
    events = TrackingEventSerializer(many=True, read_only=True)
    stops = StopWindowSerializer(many=True, read_only=True)
    cash_to_collect = serializers.SerializerMethodField(
        help_text="For staff, goods waiting at the center for the buyer to collect: the cash "
        "(CNY) to take from the buyer at their hand-over (cash on delivery: the goods; "
        '"0.00" when prepaid). Null otherwise.'
    )
    cash_collected = serializers.DecimalField(
        max_digits=12,
        decimal_places=2,
        allow_null=True,
        read_only=True,
        help_text="The cash the buyer paid for these goods when they were handed over "
        '("0.00" when prepaid); null until then, and for the farmer.',
    )

    class Meta:
        model = Shipment
        fields = (
            "id",
            "order",
            "farmer",
            "origin_center",
            "destination_center",
            "pickup_date",
            "delivery_date",
            "status",
            "weight_kg",
            "picked_up_weight_kg",
            "needs_refrigeration",
            "spoils_before_arrival",
            "transfer_late",
            "cash_to_collect",
            "cash_collected",
            "legs",
            "events",
            "stops",
        )
        read_only_fields = fields

    @extend_schema_field(serializers.DecimalField(12, 2, allow_null=True))
    def get_cash_to_collect(self, shipment: Shipment) -> str | None:
        waiting = (
            shipment.status == ShipmentStatus.AT_CENTER
            and shipment.order.delivery_method == DeliveryMethod.PICKUP
        )
        if not waiting or self.context["request"].user.role != Role.STAFF:
            return None
        return f"{CashLedger.of(shipment).hand_over(shipment.cash_goods):.2f}"

    def to_representation(self, shipment: Shipment) -> dict:
        data = super().to_representation(shipment)
        if self.context["request"].user.pk == shipment.farmer_id:
            data["cash_collected"] = None  # the buyer's money, the fee's part too
        return data


class OccurredAtField(serializers.DateTimeField):
    """DRF's, answering 400 where it raised OverflowError: a time without a zone in the
    first hours of year 1 is before year 1 in UTC."""

    def enforce_timezone(self, value):
        try:
            return super().enforce_timezone(value)
        except OverflowError:
            self.fail("overflow")


def occurred_at_field() -> serializers.DateTimeField:
    """When it happened on the road: given by a device that was offline (kept as told), or
    now when left out. The services refuse one more than CLOCK_SLACK ahead (400 `in_future`)
    or more than OFFLINE_AT_MOST ago (400 `too_long_ago`) but in a replay of what is
    recorded, answered as before whatever time it tells."""
    return OccurredAtField(required=False, default=None)


class OccurredAtSerializer(serializers.Serializer):
    occurred_at = occurred_at_field()


class HandOverSerializer(serializers.Serializer):
    delivery_code = serializers.RegexField(r"^[0-9]{6}$")
    occurred_at = occurred_at_field()


class ShipmentFilter(filters.FilterSet):
    # Ids, not choices of centers: one that does not exist matches no shipment (not 400).
    origin_center = IdFilter(field_name="origin_center_id")
    destination_center = IdFilter(field_name="destination_center_id")

    class Meta:
        model = Shipment
        fields = ("status", "pickup_date", "delivery_date", "origin_center", "destination_center")


class ShipmentViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Shipments for staff of their origin or destination center, their farmer, their buyer."""

    serializer_class = ShipmentSerializer
    permission_classes = [IsAuthenticated]
    throttle_scope = "hand_over"  # the one throttled action's
    filterset_class = ShipmentFilter

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation: no user
            return Shipment.objects.none()
        return selectors.shipment_visible_to(self.request.user)

    def _at_destination(self, request, serializer_class, service):
        """An action of the staff of the shipment's destination center (others: 404): the
        body checked with `serializer_class`, `service` called, the shipment answered."""
        shipment = self.get_object()
        if shipment.destination_center_id != request.user.service_center_id:
            raise DomainError("not_found", "No such shipment at your center.", status_code=404)
        body = serializer_class(data=request.data)
        body.is_valid(raise_exception=True)
        service(shipment_id=shipment.pk, staff=request.user, **body.validated_data)
        return Response(self.get_serializer(self.get_queryset().get(pk=shipment.pk)).data)

    @extend_schema(
        request=OccurredAtSerializer,
        responses={
            200: ShipmentSerializer,
            400: OpenApiResponse(
                description="before_last_event: a time before what is recorded of the goods; "
                "too_long_ago / in_future: a time more than 30 days ago / 5 minutes ahead "
                "(a receipt replayed: any time)"
            ),
            409: OpenApiResponse(description="not_in_transfer: the goods are not on their way"),
        },
    )
    @action(detail=True, methods=["post"], permission_classes=[IsAuthenticated, IsCenterStaff])
    def receive(self, request, pk=None):
        """Staff at the destination center record the transfer's arrival."""
        return self._at_destination(request, OccurredAtSerializer, shipment_receive)

    @extend_schema(
        request=HandOverSerializer,
        responses={
            200: ShipmentSerializer,
            400: OpenApiResponse(
                description="invalid_delivery_code (checked once the goods wait at the "
                "center; `attempts_left` before the order's hand-over locks); "
                "before_last_event: a time before what is recorded of the goods; "
                "too_long_ago / in_future: a time more than 30 days ago / 5 minutes ahead "
                "(a hand-over replayed: any time)"
            ),
            409: OpenApiResponse(
                description="not_for_hand_over: the order is delivered home; "
                "shipment_not_ready: the goods are not waiting at the center; "
                "hand_over_locked: too many wrong codes for this order, until staff review it"
            ),
        },
    )
    @action(
        detail=True,
        methods=["post"],
        url_path="hand-over",
        permission_classes=[IsAuthenticated, IsCenterStaff],
        throttle_classes=[ScopedRateThrottle],  # no guessing the code: HAND_OVER_THROTTLE_RATE
    )
    def hand_over(self, request, pk=None):
        """Staff at the buyer's center hand a pickup-at-center order's goods to the buyer,
        who shows the order's delivery code."""
        return self._at_destination(request, HandOverSerializer, shipment_hand_over)


class MyPickupsView(ListAPIView):
    """A farmer's upcoming pickups, with dates and (once scheduled) time windows."""

    serializer_class = ShipmentSerializer
    permission_classes = [IsAuthenticated, IsFarmer]

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Shipment.objects.none()
        return selectors.pickups_of_farmer(self.request.user)


class StopCompletionSerializer(serializers.Serializer):
    outcome = serializers.ChoiceField(choices=["done", "failed"])
    # Goods picked up weigh something: a farm that hands over nothing is a failed pickup.
    # And no more than the largest vehicle a center may have carries: more is a slip of the
    # finger, which would also overflow the loads of the route's stops after it.
    weight_kg = serializers.DecimalField(
        max_digits=10,
        decimal_places=3,
        min_value=Decimal("0.001"),
        max_value=MAX_CAPACITY_KG,
        required=False,
        default=None,
    )
    delivery_code = serializers.RegexField(r"^[0-9]{6}$", required=False, default="")
    # one line of the buyer's message when goods do not arrive: no new line, no direction override
    reason = TextLineField(max_length=255, required=False, allow_blank=True, default="")
    occurred_at = occurred_at_field()
    not_picked_up = serializers.ListField(
        child=serializers.IntegerField(min_value=1),
        required=False,
        default=tuple,
        max_length=1000,
        help_text="At a pickup done: the ids of its shipments not handed over (a farmer of "
        "a stop shared with other farms was out). They fail as a failed pickup's goods do, "
        "with `reason`; some of the stop's goods, not all (nothing picked up: report the "
        "stop failed). Not at a delivery: goods the buyer did not take make it failed.",
    )

    def validate_not_picked_up(self, ids: list[int]) -> tuple[int, ...]:
        return tuple(dict.fromkeys(ids))


class StopResultSerializer(serializers.ModelSerializer):
    cash_collected = serializers.SerializerMethodField(
        help_text="At a delivery stop done: the cash (CNY) recorded as taken from the buyer "
        'there (cash on delivery; "0.00" when prepaid). Null otherwise.'
    )

    class Meta:
        model = Stop
        fields = (
            "id",
            "kind",
            "status",
            "weight_kg",
            "reason",
            "occurred_at",
            "wrong_code_attempts",
            "cash_collected",
        )
        read_only_fields = fields

    @extend_schema_field(serializers.DecimalField(max_digits=14, decimal_places=2, allow_null=True))
    def get_cash_collected(self, stop: Stop) -> str | None:
        cash = stop_cash_collected(stop, stop.shipments.all())
        return None if cash is None else f"{cash:.2f}"


class StopCompleteView(APIView):
    """POST /api/v1/stops/{id}/complete/: staff of the stop's center record it."""

    permission_classes = [IsAuthenticated, IsCenterStaff]

    @extend_schema(
        request=StopCompletionSerializer,
        responses={
            200: StopResultSerializer,
            400: OpenApiResponse(
                description="invalid_delivery_code (with `attempts_left`), "
                "delivery_code_required, weight_required, reason_required, "
                "not_at_this_stop, nothing_picked_up (`not_picked_up`), "
                "before_last_event: a time before what is recorded of the goods, "
                "too_long_ago / in_future: a time more than 30 days ago / 5 minutes ahead "
                "(a completion replayed: any time)"
            ),
            409: OpenApiResponse(
                description="stop_locked: too many wrong codes, staff review it; "
                "stop_already_completed: recorded the other way; stop_cancelled: all its "
                "goods were cancelled; shipment_not_ready: goods not where the stop expects "
                "them; before_route_day: the route's day has not come"
            ),
        },
    )
    def post(self, request, pk: int):
        stop = selectors.stops_of_staff(request.user).filter(pk=pk).first()
        if stop is None:
            raise DomainError("not_found", "No such stop at your center.", status_code=404)
        body = StopCompletionSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        stop = stop_complete(
            stop_id=stop.pk, staff=request.user, data=Completion(**body.validated_data)
        )
        return Response(StopResultSerializer(stop).data)
