"""A center's vehicle routes for its staff: the list, one route with its ordered stops and
whom the driver meets at each, the route drawn as SVG, and its printable load list as CSV.

Staff see their own center's routes only: filtering by another center's id lists nothing,
and another center's route answers 404. Farmers and buyers see no routes at all (an empty
list, 404 for any route), the same answer the fleet gives them."""

import csv
import io
from collections.abc import Iterable, Iterator
from decimal import Decimal

from django.http import HttpResponse
from django.utils import timezone
from django_filters import rest_framework as filters
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import mixins, serializers, viewsets
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.permissions import IsAuthenticated
from rest_framework.views import APIView

from logistics import selectors
from logistics.contacts import (
    ContactRole,
    cash_to_collect,
    shipment_contact,
    stop_cash_collected,
    stop_contacts,
)
from logistics.maps import draw_route_map, route_map
from logistics.models import Route, Shipment, Stop, StopKind, Vehicle
from marketplace.api.filters import IdFilter
from marketplace.exceptions import DomainError
from orders.cash import NOTHING

LOAD_LIST_HEADER = (
    "stop",
    "kind",
    "eta",
    "village",
    "lat",
    "lng",
    "shipment",
    "order",
    "farmer",
    "weight_kg",
    "refrigerated",
    "lines",
    "contact",
    "phone",
    "address",
    "cash_to_collect",
)
# A cell starting with one of these is a formula to Excel: names and titles are typed by
# farmers and buyers, so such a cell gets a leading apostrophe (OWASP's CSV-injection advice).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


class RouteVehicleSerializer(serializers.ModelSerializer):
    class Meta:
        model = Vehicle
        fields = ("id", "name", "capacity_kg", "refrigerated")
        read_only_fields = fields


class StopContactSerializer(serializers.Serializer):
    role = serializers.ChoiceField(
        choices=ContactRole.choices,
        help_text="farmer at a pickup, buyer at a delivery.",
    )
    name = serializers.CharField()
    phone = serializers.CharField(help_text="E.164, e.g. +8613812345678.")
    village = serializers.CharField(
        allow_null=True,
        help_text="A farmer's village (null if their profile has none); "
        "a buyer's: the order's delivery village.",
    )
    address = serializers.CharField(
        allow_blank=True,
        help_text="A farmer's own address; a buyer's: the order's delivery address. "
        "Blank when none was given.",
    )
    shipments = serializers.ListField(
        child=serializers.IntegerField(),
        help_text="The shipments of this stop that are theirs (cancelled goods are left out).",
    )
    cash_to_collect = serializers.DecimalField(
        max_digits=12,
        decimal_places=2,
        allow_null=True,
        help_text="A buyer's: the cash (CNY) to take from them here for the goods of this "
        "stop, cash on delivery: their goods and the part of the delivery fee then due "
        "(goods of the order at an earlier open stop of the route, not one locked by wrong "
        'codes, counted as handed over). "0.00" when prepaid, or once the stop is done or '
        "failed. Null for a farmer.",
    )
    cash_collected = serializers.DecimalField(
        max_digits=12,
        decimal_places=2,
        allow_null=True,
        help_text="A buyer's: the cash recorded as taken for the goods of this stop handed "
        "over; null while none was (and for a farmer).",
    )


class RouteStopSerializer(serializers.ModelSerializer):
    shipments = serializers.ListField(
        source="shipment_ids", child=serializers.IntegerField(), read_only=True
    )
    contacts = serializers.SerializerMethodField(
        help_text="Whom the driver meets here and how to reach them: each farmer whose goods "
        "are picked up (farms sharing a place share a stop), or the buyer of the order "
        "delivered. Empty when every shipment of the stop was cancelled."
    )

    class Meta:
        model = Stop
        fields = (
            "id",
            "sequence",
            "kind",
            "shipments",
            "lat",
            "lng",
            "window_start",
            "window_end",
            "eta",
            "load_kg",
            "status",
            "contacts",
        )
        read_only_fields = fields

    @extend_schema_field(StopContactSerializer(many=True))
    def get_contacts(self, stop: Stop) -> list[dict]:
        # RouteSerializer sets `cash_to_collect`: it is the route's, stop after stop
        contacts = stop_contacts(stop, stop.contact_shipments, stop.cash_to_collect)
        return StopContactSerializer(contacts, many=True).data


class RouteSerializer(serializers.ModelSerializer):
    vehicle = RouteVehicleSerializer(read_only=True, allow_null=True)
    driving_min = serializers.IntegerField(
        read_only=True,
        allow_null=True,
        help_text="Of duration_min, the minutes driving from the center through its stops "
        "and back; null for a route stored before routes kept their driving time.",
    )
    stops = RouteStopSerializer(many=True, read_only=True)
    # set by to_representation, from the stops' contacts
    cash_to_collect = serializers.DecimalField(
        max_digits=14,
        decimal_places=2,
        read_only=True,
        help_text="The cash (CNY) still to take on this route: its stops' `cash_to_collect`.",
    )
    cash_collected = serializers.DecimalField(
        max_digits=14,
        decimal_places=2,
        read_only=True,
        help_text="The cash taken at its delivery stops done, which the driver hands in: its "
        "stops' `cash_collected`.",
    )

    class Meta:
        model = Route
        fields = (
            "id",
            "service_center",
            "date",
            "vehicle",
            "status",
            "distance_km",
            "duration_min",
            "driving_min",
            "cost",
            "cash_to_collect",
            "cash_collected",
            "stops",
        )
        read_only_fields = fields

    def to_representation(self, route: Route) -> dict:
        stops = route.stops.all()
        due = cash_to_collect((stop, stop.contact_shipments) for stop in stops)
        for stop in stops:
            stop.cash_to_collect = due.get(stop.pk, {})
        route.cash_to_collect = sum(
            (amount for stop_due in due.values() for amount in stop_due.values()), NOTHING
        )
        taken = (stop_cash_collected(stop, stop.contact_shipments) for stop in stops)
        route.cash_collected = sum((cash for cash in taken if cash is not None), NOTHING)
        return super().to_representation(route)


class RouteFilter(filters.FilterSet):
    # An id, not a choice of centers: no lookup, and another center's id simply matches
    # none of the caller's routes.
    service_center = IdFilter(field_name="service_center_id")
    date = filters.DateFilter()

    class Meta:
        model = Route
        fields = ("service_center", "date")


class RouteViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """The routes of the caller's center, with vehicle and stops in visiting order, and
    whom the driver meets at each stop."""

    serializer_class = RouteSerializer
    permission_classes = [IsAuthenticated]
    filterset_class = RouteFilter

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation: no user
            return Route.objects.none()
        return selectors.routes_with_contacts_of_staff(self.request.user)


class IgnoreAccept(BaseContentNegotiation):
    """A file view answers with its file whatever Accept says (an <img> asks for image/*,
    a spreadsheet for anything); its errors are problem+json from the first renderer."""

    def select_parser(self, request, parsers):
        return parsers[0] if parsers else None

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class RouteFileView(APIView):
    permission_classes = [IsAuthenticated]
    content_negotiation_class = IgnoreAccept

    def route(self, request, pk: int) -> Route:
        route = selectors.routes_of_staff(request.user).filter(pk=pk).first()
        if route is None:
            raise DomainError("not_found", "No such route at your center.", status_code=404)
        return route


class RouteMapView(RouteFileView):
    """GET /api/v1/routes/{id}/map.svg: the route drawn from its coordinates."""

    @extend_schema(
        operation_id="routes_map_svg",
        responses={(200, "image/svg+xml"): OpenApiResponse(OpenApiTypes.STR, "An SVG image.")},
    )
    def get(self, request, pk: int):
        svg = draw_route_map(route_map(self.route(request, pk)))
        response = HttpResponse(svg.encode(), content_type="image/svg+xml; charset=utf-8")
        # Opened on its own, an SVG is a document: let it run nothing, load nothing.
        response["Content-Security-Policy"] = "default-src 'none'"
        return response


def _cell(text: str) -> str:
    return f"'{text}" if text.startswith(_FORMULA_START) else text


def _plain(value: Decimal) -> str:
    """8.000 → 8, 12.500 → 12.5: what a person writes on a load list."""
    return f"{value.normalize():f}"


def _lines(shipment: Shipment) -> str:
    """The shipment's goods: its farmer's active lines of the order (prefetched)."""
    return "; ".join(
        f"{line.title} × {_plain(line.quantity)} {line.unit}"
        for line in shipment.order.lines.all()
        if line.farmer_id == shipment.farmer_id
    )


def load_list_rows(stops: Iterable[Stop]) -> Iterator[list[str]]:
    """One row per shipment per stop, stops in visiting order, shipments by id. The place
    is the stop's coordinates and the village of the farmer (pickup) or of the delivery;
    whom to meet there (the farmer, or the buyer), their phone and address follow, and
    at a delivery the cash to take for the shipment (logistics.contacts.cash_to_collect:
    the stop's is the sum of its rows) closes the row, blank at a pickup."""
    stops = list(stops)
    due = cash_to_collect((stop, stop.shipments.all()) for stop in stops)
    for stop in stops:
        eta = timezone.localtime(stop.eta).strftime("%H:%M") if stop.eta else ""
        for shipment in stop.shipments.all():
            contact = shipment_contact(shipment, stop.kind)
            yield [
                str(stop.sequence),
                stop.kind,
                eta,
                _cell(contact.village or ""),
                str(stop.lat),
                str(stop.lng),
                str(shipment.pk),
                str(shipment.order_id),
                _cell(shipment.farmer.name),
                _plain(shipment.load_kg),
                "yes" if shipment.needs_refrigeration else "no",
                _cell(_lines(shipment)),
                _cell(contact.name),
                _cell(contact.phone),
                _cell(contact.address),
                f"{due.get(stop.pk, {}).get(shipment.pk, Decimal(0)):.2f}"
                if stop.kind == StopKind.DELIVERY
                else "",
            ]


class RouteLoadListView(RouteFileView):
    """GET /api/v1/routes/{id}/load-list.csv: what to load and hand over, stop by stop.
    UTF-8 with a byte-order mark, so Excel opens the Chinese names as they are."""

    @extend_schema(
        operation_id="routes_load_list_csv",
        responses={(200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, "The load list.")},
    )
    def get(self, request, pk: int):
        route = self.route(request, pk)
        text = io.StringIO()
        writer = csv.writer(text)
        writer.writerow(LOAD_LIST_HEADER)
        writer.writerows(load_list_rows(selectors.load_list_stops(route.pk)))
        response = HttpResponse(
            ("\ufeff" + text.getvalue()).encode(), content_type="text/csv; charset=utf-8"
        )
        filename = f"route-{route.pk}-{route.date:%Y-%m-%d}-load-list.csv"
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
        return response
