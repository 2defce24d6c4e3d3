"""Reads of geography."""

from django.db.models import QuerySet

from logistics.models import ServiceCenter, Village


def village_list() -> QuerySet[Village]:
    return Village.objects.select_related("service_center")


def service_center_list() -> QuerySet[ServiceCenter]:
    return ServiceCenter.objects.all()
