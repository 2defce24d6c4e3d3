from django_filters import rest_framework as filters
from rest_framework import viewsets
from rest_framework.permissions import AllowAny

from logistics import selectors
from logistics.api.serializers import ServiceCenterSerializer, VillageSerializer
from logistics.models import Village
from marketplace.api.filters import IdFilter


class VillageFilter(filters.FilterSet):
    search = filters.CharFilter(method="filter_search", help_text="Part of the village name.")
    # An id, not a choice of centers: one that does not exist matches no village (not 400).
    service_center = IdFilter(field_name="service_center_id")

    class Meta:
        model = Village
        fields = ("service_center", "county")

    def filter_search(self, queryset, name, value):
        return queryset.filter(name__icontains=value.strip())


class VillageViewSet(viewsets.ReadOnlyModelViewSet):
    """Villages, searchable by name (`?search=`) and filterable by service center."""

    permission_classes = [AllowAny]
    serializer_class = VillageSerializer
    filterset_class = VillageFilter
    queryset = selectors.village_list()


class ServiceCenterViewSet(viewsets.ReadOnlyModelViewSet):
    permission_classes = [AllowAny]
    serializer_class = ServiceCenterSerializer
    queryset = selectors.service_center_list()
