from django.urls import path

from listings.api.photos import ListingPhotoUploadView, ListingPhotoView
from listings.api.views import CategoryViewSet, FarmerProfileViewSet, ListingViewSet
from marketplace.api.routers import Router

router = Router()
router.register("categories", CategoryViewSet, basename="category")
router.register("listings", ListingViewSet, basename="listing")
router.register("farmers", FarmerProfileViewSet, basename="farmer")

urlpatterns = [
    *router.urls,
    path("listings/<int:pk>/photos/", ListingPhotoUploadView.as_view(), name="listing-photos"),
    path(
        "listings/<int:pk>/photos/<int:photo_id>/",
        ListingPhotoView.as_view(),
        name="listing-photo",
    ),
]
