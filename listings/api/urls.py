from rest_framework.routers import SimpleRouter

from listings.api.views import CategoryViewSet, ListingViewSet

router = SimpleRouter()
router.register("categories", CategoryViewSet, basename="category")
router.register("listings", ListingViewSet, basename="listing")

urlpatterns = router.urls
