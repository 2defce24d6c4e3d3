from django.urls import path
from rest_framework.routers import SimpleRouter

from listings.api.photos import ListingPhotoUploadView
from listings.api.views import CategoryViewSet, FarmerProfileViewSet, ListingViewSet

router = SimpleRouter()
router.register("categories", CategoryViewSet, basename="category")
router.register("listings", ListingViewSet, basename="listing")
router.register("farmers", FarmerProfileViewSet, basename="farmer")

urlpatterns = [
    *router.urls,
    path("listings/<int:pk>/photos/", ListingPhotoUploadView.as_view(), name="listing-photos"),
]
