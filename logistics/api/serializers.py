from rest_framework import serializers

from logistics.models import ServiceCenter, Village


class ServiceCenterSerializer(serializers.ModelSerializer):
    class Meta:
        model = ServiceCenter
        fields = (
            "id",
            "name",
            "county",
            "address",
            "lat",
            "lng",
            "opens_at",
            "closes_at",
            "average_speed_kmh",
            "detour_factor",
        )
        read_only_fields = fields


class VillageSerializer(serializers.ModelSerializer):
    service_center_name = serializers.CharField(source="service_center.name", read_only=True)

    class Meta:
        model = Village
        fields = ("id", "name", "county", "lat", "lng", "service_center", "service_center_name")
        read_only_fields = fields
