from rest_framework.routers import SimpleRouter

from logistics.api.views import ServiceCenterViewSet, VillageViewSet

router = SimpleRouter()
router.register("villages", VillageViewSet, basename="village")
router.register("service-centers", ServiceCenterViewSet, basename="service-center")

urlpatterns = router.urls
