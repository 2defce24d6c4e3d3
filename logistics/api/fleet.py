"""A center's fleet, for the staff of that center: /service-centers/{id}/vehicles/[{id}/].

For anyone else (staff of another center, farmers, buyers) the fleet does not exist: every
read and write answers 404, so nobody learns which vehicles another center has."""

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.exceptions import NotFound
from rest_framework.permissions import BasePermission, IsAuthenticated
from rest_framework.response import Response

from logistics import selectors
from logistics.models import Vehicle
from logistics.services.fleet import vehicle_create, vehicle_deactivate, vehicle_update
from marketplace.accounts.models import Role
from marketplace.api.serializers import TextLineField, TimeOfDayField


class VehicleSerializer(serializers.ModelSerializer):
    class Meta:
        model = Vehicle
        fields = (
            "id",
            "name",
            "capacity_kg",
            "refrigerated",
            "shift_start",
            "shift_end",
            "cost_per_km",
            "active",
        )
        read_only_fields = fields


class VehicleInputSerializer(serializers.Serializer):
    """Types only; the rules (capacity range, shift order, unique name) are the service's."""

    # one line that shows: it heads the route a driver reads, and its map
    name = TextLineField(max_length=60)
    capacity_kg = serializers.DecimalField(max_digits=8, decimal_places=1)
    # Defaults given, else a form-encoded POST would read a missing box as False.
    refrigerated = serializers.BooleanField(required=False, default=False)
    # the center's local time (TIME_ZONE): one with a UTC offset or Z is 400
    shift_start = TimeOfDayField(required=False)
    shift_end = TimeOfDayField(required=False)
    cost_per_km = serializers.DecimalField(max_digits=6, decimal_places=2, required=False)
    active = serializers.BooleanField(required=False, default=True)


class IsStaffOfCenterInPath(BasePermission):
    """Staff of the center named in the URL; anyone else gets 404, not 403."""

    def has_permission(self, request, view) -> bool:
        user = request.user
        if user.role != Role.STAFF or user.service_center_id != view.kwargs["center_id"]:
            raise NotFound
        return True


class VehicleViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """The fleet of a service center. DELETE removes a vehicle no route refers to (204);
    one that routes refer to is kept for them and deactivated (200, `active: false`)."""

    serializer_class = VehicleSerializer
    permission_classes = [IsAuthenticated, IsStaffOfCenterInPath]

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation: no user
            return Vehicle.objects.none()
        return selectors.vehicles_of_center(self.request.user, self.kwargs["center_id"])

    @extend_schema(request=VehicleInputSerializer, responses={201: VehicleSerializer})
    def create(self, request, center_id: int):
        body = VehicleInputSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        vehicle = vehicle_create(center_id=center_id, **body.validated_data)
        return Response(self.get_serializer(vehicle).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=VehicleInputSerializer, responses=VehicleSerializer)
    def partial_update(self, request, center_id: int, pk=None):
        vehicle = self.get_object()
        body = VehicleInputSerializer(data=request.data, partial=True)
        body.is_valid(raise_exception=True)
        vehicle = vehicle_update(vehicle_id=vehicle.pk, changes=body.validated_data)
        return Response(self.get_serializer(vehicle).data)

    @extend_schema(responses={204: None, 200: VehicleSerializer})
    def destroy(self, request, center_id: int, pk=None):
        vehicle = vehicle_deactivate(vehicle_id=self.get_object().pk)
        if vehicle is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return Response(self.get_serializer(vehicle).data)
