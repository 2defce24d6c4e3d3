from decimal import Decimal

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from logistics.models import Shipment, ShipmentLeg, TrackingEvent, Village
from marketplace.accounts.models import Role
from marketplace.api.serializers import (
    FieldsOnceModelSerializer,
    FieldsOnceSerializer,
    PrimaryKeyRelatedField,
    TextLineField,
)
from orders.models import (
    DeliveryMethod,
    LineStatus,
    Order,
    OrderEvent,
    OrderLine,
    OrderStatus,
    PaymentMethod,
    Review,
)
from orders.selectors import order_delivered_from, order_refund_due, order_was_confirmed
from orders.services import MAX_LINES, LineRequest


class LineInputSerializer(FieldsOnceSerializer):
    # a bigint key at most: order_place locks the listings by id in SQL of its own, where
    # a larger number fails the query rather than matching nothing
    listing = serializers.IntegerField(min_value=1, max_value=2**63 - 1)
    quantity = serializers.DecimalField(
        max_digits=12, decimal_places=3, min_value=Decimal("0.001"), max_value=Decimal("1000000")
    )
    # The price per unit the buyer was shown: given, an order at another price is 409
    # price_changed (the farmer changed it since) instead of charging the price of now.
    unit_price = serializers.DecimalField(
        max_digits=10, decimal_places=2, min_value=Decimal("0.00"), required=False
    )


class OrderPlaceSerializer(FieldsOnceSerializer):
    lines = LineInputSerializer(many=True, allow_empty=False, max_length=MAX_LINES)
    delivery_method = serializers.ChoiceField(choices=DeliveryMethod.choices)
    payment_method = serializers.ChoiceField(choices=PaymentMethod.choices)
    delivery_village = PrimaryKeyRelatedField(
        queryset=Village.objects.all(), required=False, allow_null=True, default=None
    )
    delivery_address = TextLineField(max_length=255, required=False, allow_blank=True, default="")
    delivery_lat = serializers.DecimalField(
        max_digits=9, decimal_places=6, min_value=-90, max_value=90, required=False, default=None
    )
    delivery_lng = serializers.DecimalField(
        max_digits=9,
        decimal_places=6,
        min_value=-180,
        max_value=180,
        required=False,
        default=None,
    )
    note = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")

    def validate(self, attrs):
        if (attrs["delivery_lat"] is None) != (attrs["delivery_lng"] is None):
            raise serializers.ValidationError(
                {
                    "delivery_lat": serializers.ErrorDetail(
                        "Give both or neither.", code="coordinates_incomplete"
                    )
                }
            )
        attrs["lines"] = [
            LineRequest(
                listing_id=line["listing"],
                quantity=line["quantity"],
                seen_price=line.get("unit_price"),
            )
            for line in attrs["lines"]
        ]
        return attrs


class LineSerializer(FieldsOnceModelSerializer):
    class Meta:
        model = OrderLine
        fields = (
            "id",
            "listing",
            "farmer",
            "title",
            "unit",
            "quantity",
            "unit_price",
            "unit_weight_kg",
            "subtotal",
            "status",
            "reject_reason",
        )
        read_only_fields = fields


class EventSerializer(FieldsOnceModelSerializer):
    """A status change of the order. One about another farmer's lines (their last line
    rejected) shows a farmer the change only: who made it and why are that farmer's
    business, as their lines are."""

    # blank on an order's first event (it came from nowhere): the schema says so too
    from_status = serializers.ChoiceField(OrderStatus.choices, allow_blank=True, read_only=True)

    class Meta:
        model = OrderEvent
        fields = ("from_status", "to_status", "actor", "reason", "created_at")
        read_only_fields = fields

    def to_representation(self, event):
        data = super().to_representation(event)
        viewer = self.context["request"].user
        if viewer.role == Role.FARMER and event.farmer_id not in (None, viewer.pk):
            data.update(actor=None, reason="")
        return data


class ShipmentLegSerializer(FieldsOnceModelSerializer):
    class Meta:
        model = ShipmentLeg
        fields = ("sequence", "kind", "from_center", "to_center", "date", "status")
        read_only_fields = fields


class TrackingEventSerializer(FieldsOnceModelSerializer):
    class Meta:
        model = TrackingEvent
        fields = ("status", "occurred_at", "center", "actor", "note")
        read_only_fields = fields


class OrderShipmentSerializer(FieldsOnceModelSerializer):
    """The order's shipments with their legs and tracking events (the contract's order
    detail); GET /api/v1/shipments/{id}/ adds their stops and the farmer's lines."""

    # as order_visible_to lists them
    legs = ShipmentLegSerializer(many=True, read_only=True, source="legs_listed")
    events = TrackingEventSerializer(many=True, read_only=True, source="events_listed")
    # null in a farmer's view (OrderSerializer.to_representation): the schema says so too
    cash_collected = serializers.DecimalField(
        12,
        2,
        allow_null=True,
        read_only=True,
        help_text="The cash the buyer paid for these goods when they were handed over "
        '("0.00" when prepaid); null until then, and for farmers.',
    )

    class Meta:
        model = Shipment
        fields = (
            "id",
            "farmer",
            "origin_center",
            "destination_center",
            "pickup_date",
            "delivery_date",
            "status",
            "weight_kg",
            "spoils_before_arrival",
            "cash_collected",
            "legs",
            "events",
        )
        read_only_fields = fields


class OrderReviewSerializer(serializers.ModelSerializer):
    class Meta:
        model = Review
        fields = ("rating", "comment", "created_at")
        read_only_fields = fields


class OrderBuyerSerializer(serializers.Serializer):
    """The order's buyer: for the schema (OrderSerializer.get_buyer builds it)."""

    id = serializers.IntegerField()
    name = serializers.CharField()
    phone = serializers.CharField(
        allow_null=True,
        help_text="Null for those who do not take the goods to the buyer: a farmer before "
        "the order was confirmed, staff of a center that only picks some of them up.",
    )


class OrderSerializer(FieldsOnceModelSerializer):
    """One order as the viewer may see it: the delivery code for its buyer only; for a
    farmer, their own lines and totals, and the buyer's phone, delivery place and note once the
    order was confirmed; for staff, the buyer's phone, delivery place and note only at the
    center delivering it."""

    lines = LineSerializer(many=True, read_only=True)
    events = EventSerializer(many=True, read_only=True)
    shipments = OrderShipmentSerializer(many=True, read_only=True)
    review = OrderReviewSerializer(
        read_only=True, allow_null=True, help_text="The buyer's review, once given; else null."
    )
    buyer = serializers.SerializerMethodField()
    delivery_code = serializers.SerializerMethodField()
    # null in a farmer's view (to_representation): the schema says so too
    delivery_fee = serializers.DecimalField(8, 2, allow_null=True, read_only=True)
    total = serializers.DecimalField(12, 2, allow_null=True, read_only=True)
    # null while the viewer may not know where the buyer lives (to_representation)
    delivery_lat = serializers.DecimalField(9, 6, allow_null=True, read_only=True)
    delivery_lng = serializers.DecimalField(9, 6, allow_null=True, read_only=True)
    note = serializers.CharField(
        read_only=True,
        help_text="What the buyer wrote with the order (it may say how to reach them): blank "
        "where the buyer's phone is null.",
    )
    refund_due = serializers.SerializerMethodField(
        help_text="Paid and owed back to the buyer (lines rejected or not delivered, the "
        'order cancelled after payment); "0.00" when nothing is. Null for farmers.'
    )

    class Meta:
        model = Order
        fields = (
            "id",
            "status",
            "buyer",
            "lines",
            "subtotal",
            "delivery_fee",
            "total",
            "refund_due",
            "delivery_method",
            "delivery_village",
            "delivery_address",
            "delivery_lat",
            "delivery_lng",
            "payment_method",
            "payment_status",
            "payment_due_at",
            "paid_at",
            "note",
            "delivery_code",
            "events",
            "shipments",
            "review",
            "created_at",
            "updated_at",
        )
        read_only_fields = fields

    @property
    def _viewer(self):
        return self.context["request"].user

    def _hidden_from_viewer(self, order) -> bool:
        """How to reach the buyer (phone, delivery address and place, and their note: free
        text, which may hold either) is for whoever brings them their goods. Not a farmer's
        before the order was confirmed, nor once they rejected every line (the lines a
        farmer is shown are their own); not for staff of a center that only picks up some
        farmers' goods, which another center delivers (order_delivered_from: from what
        order_visible_to fetched, no query)."""
        viewer = self._viewer
        if viewer.pk == order.buyer_id:
            return False
        if viewer.role == Role.FARMER:
            return not order_was_confirmed(order) or all(
                line.status == LineStatus.REJECTED for line in order.lines.all()
            )
        if viewer.role == Role.STAFF:
            return not order_delivered_from(order, viewer.service_center_id)
        return False

    @extend_schema_field(OrderBuyerSerializer)
    def get_buyer(self, order) -> dict:
        hidden = self._hidden_from_viewer(order)
        return {
            "id": order.buyer_id,
            "name": order.buyer.name,
            "phone": None if hidden else order.buyer.phone,
        }

    def get_delivery_code(self, order) -> str | None:
        return order.delivery_code if self._viewer.pk == order.buyer_id else None

    @extend_schema_field(serializers.DecimalField(14, 2, allow_null=True))
    def get_refund_due(self, order) -> str:
        return f"{order_refund_due(order):.2f}"

    def to_representation(self, order):
        data = super().to_representation(order)
        if self._viewer.role == Role.FARMER and self._viewer.pk != order.buyer_id:
            # A farmer's view of the money: their own lines, not the whole basket.
            own = sum(
                (Decimal(line["subtotal"]) for line in data["lines"] if line["status"] == "active"),
                Decimal("0.00"),
            )
            data.update(subtotal=f"{own:.2f}", delivery_fee=None, total=None, refund_due=None)
            for shipment in data["shipments"]:
                shipment["cash_collected"] = None  # the buyer's money, the fee's part too
        if self._hidden_from_viewer(order):
            data.update(delivery_address="", delivery_lat=None, delivery_lng=None, note="")
        return data


# A reason is one line of the buyer's message (a cancel's, a rejected line's), ahead of the
# order's new total and what is paid back, and of its events: a new line or a terminal escape
# breaks the message, and a direction override turns its total around (TextLineField).
class ReasonSerializer(serializers.Serializer):
    reason = TextLineField(max_length=255, required=False, allow_blank=True, default="")


class RejectSerializer(serializers.Serializer):
    reason = TextLineField(max_length=255)
    restock = serializers.BooleanField(
        required=False,
        default=True,
        help_text="Whether the line's quantity goes back on sale in the listing; false when "
        "the goods are gone (sold elsewhere, spoiled), so nobody orders them again.",
    )


class ReviewInputSerializer(serializers.Serializer):
    rating = serializers.IntegerField(min_value=1, max_value=5)
    comment = serializers.CharField(max_length=1000, required=False, allow_blank=True, default="")


class ReviewSerializer(serializers.ModelSerializer):
    class Meta:
        model = Review
        fields = ("id", "order", "buyer", "rating", "comment", "created_at")
        read_only_fields = fields
