from django.urls import path

from logistics.api.fleet import VehicleViewSet
from logistics.api.routes import RouteLoadListView, RouteMapView, RouteViewSet
from logistics.api.schedule import ScheduleRunViewSet, ScheduleView
from logistics.api.shipments import MyPickupsView, ShipmentViewSet, StopCompleteView
from logistics.api.views import ServiceCenterViewSet, VillageViewSet
from marketplace.api.routers import Router

router = Router()
router.register("villages", VillageViewSet, basename="village")
router.register("service-centers", ServiceCenterViewSet, basename="service-center")
router.register("shipments", ShipmentViewSet, basename="shipment")
router.register("schedule-runs", ScheduleRunViewSet, basename="schedule-run")

urlpatterns = [
    *router.urls,
    path("my/pickups/", MyPickupsView.as_view(), name="my-pickups"),
    path("stops/<int:pk>/complete/", StopCompleteView.as_view(), name="stop-complete"),
    path("service-centers/<int:pk>/schedule/", ScheduleView.as_view(), name="schedule-day"),
]

# A center's fleet, nested under its center; routes with their map and load list.
vehicle_list = VehicleViewSet.as_view({"get": "list", "post": "create"})
vehicle_detail = VehicleViewSet.as_view(
    {"get": "retrieve", "patch": "partial_update", "delete": "destroy"}
)
route_router = Router()
route_router.register("routes", RouteViewSet, basename="route")
urlpatterns += [
    path("service-centers/<int:center_id>/vehicles/", vehicle_list, name="vehicle-list"),
    path(
        "service-centers/<int:center_id>/vehicles/<int:pk>/", vehicle_detail, name="vehicle-detail"
    ),
    *route_router.urls,
    path("routes/<int:pk>/map.svg", RouteMapView.as_view(), name="route-map"),
    path("routes/<int:pk>/load-list.csv", RouteLoadListView.as_view(), name="route-load-list"),
]
