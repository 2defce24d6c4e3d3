from decimal import Decimal

from django_filters import rest_framework as filters
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle

from marketplace.accounts.models import Role
from marketplace.api.permissions import IsBuyer, IsFarmer
from marketplace.exceptions import DomainError
from orders import selectors, services
from orders.api.serializers import (
    OrderPlaceSerializer,
    OrderSerializer,
    ReasonSerializer,
    RejectSerializer,
    ReviewInputSerializer,
    ReviewSerializer,
)
from orders.models import Order, OrderStatus


class OrderFilter(filters.FilterSet):
    # a column of the order itself: no join, so no DISTINCT over every column of the page
    status = filters.MultipleChoiceFilter(choices=OrderStatus.choices, distinct=False)
    created_after = filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = Order
        fields = ("status", "payment_method", "delivery_method")

    def __init__(self, data=None, *args, **kwargs):
        # A blank value is no value (a form sends the fields left blank), as each filter of
        # one value takes it: `?status=` filters nothing, `?status=&status=placed` placed.
        if data is not None and "status" in data:
            data = data.copy()
            data.setlist("status", [value for value in data.getlist("status") if value.strip()])
        super().__init__(data, *args, **kwargs)


class OrderViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Buyers place and follow orders; farmers see their lines; staff see their center's."""

    serializer_class = OrderSerializer
    filterset_class = OrderFilter
    throttle_scope = "orders"  # the throttled actions' (get_throttles)

    def get_permissions(self):
        if self.action in ("create", "review"):
            return [IsAuthenticated(), IsBuyer()]
        if self.action == "reject_line":
            return [IsAuthenticated(), IsFarmer()]
        return [IsAuthenticated()]

    def get_throttles(self):
        """Placing and cancelling count together against ORDER_THROTTLE_RATE, per user: a
        script placing and calling off orders in a loop would churn the listings' stock and
        fill the farmers' phones. Reads, a farmer's rejections and staff's cancels (calling
        off a whole village's orders when a road is closed) are not limited."""
        if self.action == "create" or (
            # the schema is made with no user: it lists the 429 a buyer's cancel may get
            self.action == "cancel" and getattr(self.request.user, "role", None) != Role.STAFF
        ):
            return [ScopedRateThrottle()]
        return super().get_throttles()

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation: no user
            return Order.objects.none()
        return selectors.order_visible_to(self.request.user)

    def _answer(self, order, status_code=status.HTTP_200_OK) -> Response:
        fresh = self.get_queryset().get(pk=order.pk)
        return Response(self.get_serializer(fresh).data, status=status_code)

    @extend_schema(
        request=OrderPlaceSerializer,
        responses={
            201: OrderSerializer,
            400: OpenApiResponse(
                description="validation_error; no_lines, too_many_lines, duplicate_lines, "
                "listing_not_found, own_listing, listing_unavailable, "
                "below_min_order_quantity, quantity_not_whole (`listing` names the line's "
                "listing), order_too_large, delivery_place_too_far; nothing was ordered"
            ),
            403: OpenApiResponse(description="permission_denied: only buyers place orders"),
            409: OpenApiResponse(
                description="insufficient_stock: `lines` names every short line, each with "
                "its `listing`, what was `requested` and what is `available`; price_changed: "
                "`lines` names every line whose `unit_price` given (the price the buyer saw) "
                "is not the listing's price now, each with its `listing`, the price `seen` "
                "and the `price` now; nothing was ordered either way"
            ),
        },
    )
    def create(self, request):
        """Answered from the order order_place hands back with its lines, event and (no)
        shipments, not read again: the same JSON a GET by its buyer gives, with the keyed
        request's transaction (and its listing locks) ending sooner."""
        serializer = OrderPlaceSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        order = services.order_place(buyer=request.user, **serializer.validated_data)
        order.amount_held = Decimal("0.00")  # as order_visible_to annotates: nothing paid yet
        return Response(self.get_serializer(order).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        request=ReasonSerializer,
        responses={
            200: OrderSerializer,
            403: OpenApiResponse(
                description="permission_denied: only the buyer or staff of the center "
                "delivering the order cancel it"
            ),
            409: OpenApiResponse(
                description="cannot_cancel: the order is past its first pickup, or over"
            ),
        },
    )
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        """The buyer before the first pickup, or staff of the center delivering the order
        (the buyer's). Staff of a center that only picks up some of its goods see the
        order but do not call off the other centers' part of it: a farmer of theirs who
        cannot hand over rejects their line, or their stop fails."""
        order = self.get_object()
        user = request.user
        if not (
            user.role == Role.BUYER
            or (
                user.role == Role.STAFF
                and selectors.order_delivered_from(order, user.service_center_id)
            )
        ):
            raise DomainError(
                "permission_denied",
                "Only the buyer or staff of the center delivering the order cancel it.",
                status_code=403,
            )
        serializer = ReasonSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        order = services.order_cancel(
            order_id=order.pk, actor=request.user, reason=serializer.validated_data["reason"]
        )
        return self._answer(order)

    @extend_schema(
        request=RejectSerializer,
        responses={
            200: OrderSerializer,
            409: OpenApiResponse(
                description="line_not_active: the line is no longer open (rejecting it again "
                "answers 200); "
                "cannot_cancel: the order is past its first pickup, or over; "
                "order_awaiting_payment: the buyer is paying the quoted total"
            ),
        },
    )
    @action(detail=True, methods=["post"], url_path=r"lines/(?P<line_id>[0-9]+)/reject")
    def reject_line(self, request, pk=None, line_id=None):
        order = self.get_object()
        serializer = RejectSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        order = services.order_line_reject(
            order_id=order.pk,
            line_id=int(line_id),
            farmer=request.user,
            **serializer.validated_data,
        )
        return self._answer(order)

    @extend_schema(
        request=ReviewInputSerializer,
        responses={
            201: ReviewSerializer,
            409: OpenApiResponse(
                description="order_not_delivered: not delivered yet (`order_status` names its "
                "status); already_reviewed: one review per order"
            ),
        },
    )
    @action(detail=True, methods=["post"])
    def review(self, request, pk=None):
        """The buyer, once the order is delivered; one review per order."""
        order = self.get_object()
        serializer = ReviewInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        review = services.order_review(
            order_id=order.pk, buyer=request.user, **serializer.validated_data
        )
        return Response(ReviewSerializer(review).data, status=status.HTTP_201_CREATED)
