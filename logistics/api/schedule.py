from datetime import timedelta

from django.db import transaction
from django.utils import timezone
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from logistics import selectors
from logistics.models import ScheduleRun, ServiceCenter
from logistics.models.routes import whole_minutes
from logistics.services.schedule import schedule_run_request
from marketplace.api.permissions import IsCenterStaff
from marketplace.exceptions import DomainError

SCHEDULE_HORIZON = timedelta(days=365)


class ScheduleRequestSerializer(serializers.Serializer):
    date = serializers.DateField(
        help_text="Today or a day ahead, up to a year: a day gone by is not planned again."
    )

    def validate_date(self, day: date) -> date:
        today = timezone.localdate()
        if day < today:
            raise serializers.ValidationError("A day gone by is not planned.", code="in_past")
        if day > today + SCHEDULE_HORIZON:
            raise serializers.ValidationError(
                "Days are planned up to a year ahead.", code="too_far_ahead"
            )
        return day


class RunRoutesNowSerializer(serializers.Serializer):
    """What a run's routes are now (logistics.selectors.schedule_runs_of_staff)."""

    routes = serializers.IntegerField(source="now_routes")
    vehicles_used = serializers.IntegerField(source="now_vehicles_used")
    stops = serializers.IntegerField(source="now_stops")
    stops_open = serializers.IntegerField(
        source="now_stops_open", help_text="Not yet recorded: pending, or locked for review."
    )
    stops_failed = serializers.IntegerField(source="now_stops_failed")
    distance_km = serializers.DecimalField(
        source="now_distance_km", max_digits=12, decimal_places=2
    )
    duration_min = serializers.IntegerField(source="now_duration_min")
    driving_min = serializers.SerializerMethodField(
        help_text="Of duration_min, the driving: its routes' driving seconds, rounded to "
        "minutes as the summary's driving_min. Null when one of its routes has none (stored "
        "before routes kept their driving time).",
    )
    cost = serializers.DecimalField(source="now_cost", max_digits=12, decimal_places=2)

    @extend_schema_field(serializers.IntegerField(allow_null=True))
    def get_driving_min(self, run: ScheduleRun) -> int | None:
        return whole_minutes(run.now_driving_s)


class ScheduleRunSerializer(serializers.ModelSerializer):
    summary = serializers.JSONField(
        read_only=True,
        help_text="What the plan made when it was stored: its routes, stops, distance_km, "
        "duration_min and driving_min, vehicles_used of vehicles_available, and the goods "
        "it left out (unassigned, with reasons). It is the run's record and does not change "
        "after; routes_now gives its routes as they are now.",
    )
    routes_now = RunRoutesNowSerializer(
        source="*",
        read_only=True,
        help_text="The run's routes as they are now, read when asked: goods cancelled or "
        "turned down after the plan take their stops, kilometres (and a route left with "
        "none) off; stops recorded on the road are counted open or failed; a later plan of "
        "the day replaces the routes not yet on the road (this run's then count 0).",
    )

    class Meta:
        model = ScheduleRun
        fields = (
            "id",
            "service_center",
            "date",
            "status",
            "progress",
            "summary",
            "routes_now",
            "asked_again",
            "error",
            "created_at",
            "started_at",
            "finished_at",
        )
        read_only_fields = fields


def _own_center(request, center_id: int) -> ServiceCenter:
    """Staff act on their own center only; any other answers 404."""
    if request.user.service_center_id != center_id:
        raise DomainError("not_found", "No such service center of yours.", status_code=404)
    return ServiceCenter.objects.get(pk=center_id)


class ScheduleView(APIView):
    """POST /api/v1/service-centers/{id}/schedule/ {date}: plan that day (202, a run)."""

    permission_classes = [IsAuthenticated, IsCenterStaff]

    @extend_schema(request=ScheduleRequestSerializer, responses={202: ScheduleRunSerializer})
    def post(self, request, pk: int):
        center = _own_center(request, pk)
        body = ScheduleRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        # One transaction: the run is read back for the answer before its message goes out
        # (on commit), so a new run answers `queued` however fast a worker takes it up, as
        # it does under an Idempotency-Key, whose transaction holds the view's.
        with transaction.atomic():
            run = schedule_run_request(
                center=center,
                day=body.validated_data["date"],
                requested_by=request.user,
                again_after_running=True,
            )
            run = selectors.schedule_runs_of_staff(request.user).get(pk=run.pk)
        return Response(ScheduleRunSerializer(run).data, status=status.HTTP_202_ACCEPTED)


class ScheduleRunViewSet(mixins.RetrieveModelMixin, mixins.ListModelMixin, viewsets.GenericViewSet):
    """A center's schedule runs: status, progress and summary (staff of that center)."""

    serializer_class = ScheduleRunSerializer
    permission_classes = [IsAuthenticated, IsCenterStaff]
    filterset_fields = ("date", "status")

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return ScheduleRun.objects.none()
        return selectors.schedule_runs_of_staff(self.request.user)
