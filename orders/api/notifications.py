"""GET /api/v1/notifications/ (own only), mark one read, mark all read."""

from django.db.models import Q
from django_filters import rest_framework as filters
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import mixins, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from marketplace.api.filters import BIGGEST_ID, BooleanFilter, IdFilter
from orders import notifications, selectors
from orders.models import Notification


class NotificationSerializer(serializers.ModelSerializer):
    class Meta:
        model = Notification
        fields = ("id", "kind", "order", "title", "body", "data", "created_at", "read_at")
        read_only_fields = fields


class ReadAllSerializer(serializers.Serializer):
    newest_seen = serializers.IntegerField(
        min_value=1,
        max_value=BIGGEST_ID,
        required=False,
        help_text="The id of the newest notification the app showed: only it and older ones "
        "are marked, so one told since stays unread. Without it, every unread one is.",
    )


class NotificationFilter(filters.FilterSet):
    unread = BooleanFilter(method="filter_unread", label="only unread (true) or read")
    order = IdFilter(method="filter_order", label="about this order")

    class Meta:
        model = Notification
        fields = ("kind", "order")

    def filter_unread(self, queryset, name, value):
        return queryset.filter(read_at__isnull=value)

    def filter_order(self, queryset, name, value):
        """The notifications about the order: its own, and a day's pickups it shares with the
        farmer's other orders (one notification with no `order`; `data.orders` names them)."""
        shared = Q(order__isnull=True, data__orders__contains=[value])
        return queryset.filter(Q(order_id=value) | shared)


class NotificationViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    """What the system told the signed-in user, newest first. Someone else's answer 404."""

    serializer_class = NotificationSerializer
    filterset_class = NotificationFilter
    queryset = Notification.objects.none()  # tells the schema the model; see get_queryset

    def get_queryset(self):
        return selectors.notifications_of(self.request.user)

    @extend_schema(request=None, responses=NotificationSerializer)
    @action(detail=True, methods=["post"])
    def read(self, request, pk=None):
        """Mark read; again changes nothing (the first read time stays)."""
        notification = notifications.notification_mark_read(
            user=request.user, notification_id=int(pk)
        )
        return Response(self.get_serializer(notification).data)

    @extend_schema(
        request=ReadAllSerializer,
        responses=inline_serializer("ReadAll", {"marked": serializers.IntegerField()}),
    )
    @action(detail=False, methods=["post"], url_path="read-all")
    def read_all(self, request):
        """Mark every unread notification read, or those up to `newest_seen`; `marked` says
        how many."""
        serializer = ReadAllSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        marked = notifications.notification_mark_all_read(
            user=request.user, newest_seen=serializer.validated_data.get("newest_seen")
        )
        return Response({"marked": marked})
