from django.urls import path
from rest_framework.routers import SimpleRouter

from logistics.api.shipments import MyPickupsView, ShipmentViewSet, StopCompleteView
from logistics.api.views import ServiceCenterViewSet, VillageViewSet

router = SimpleRouter()
router.register("villages", VillageViewSet, basename="village")
router.register("service-centers", ServiceCenterViewSet, basename="service-center")
router.register("shipments", ShipmentViewSet, basename="shipment")

urlpatterns = [
    *router.urls,
    path("my/pickups/", MyPickupsView.as_view(), name="my-pickups"),
    path("stops/<int:pk>/complete/", StopCompleteView.as_view(), name="stop-complete"),
]
