"""What a hurried team would write: a ModelViewSet, `fields="__all__"`, `icontains` search.

Mounted only by bench/naive_urls.py, at /bench/naive/listings/. The same query parameters
as /api/v1/listings/ where a plain queryset filter does the job: q (icontains on title or
description), category, min_price, max_price, and near + radius_km as a lat/lng box (no
distance, no distance ordering: that already favours this view). Paginated by the
project's default PageNumberPagination (with its count), ordered by the model's Meta
ordering (-created_at, -id).
"""

import math

from django.db.models import Q
from rest_framework import permissions, serializers, viewsets

from listings.models import Listing


class NaiveListingSerializer(serializers.ModelSerializer):
    class Meta:
        model = Listing
        exclude = ("search_vector",)  # everything else, as `fields = "__all__"` would


class NaiveListingViewSet(viewsets.ModelViewSet):
    queryset = Listing.objects.filter(status="active")
    serializer_class = NaiveListingSerializer
    permission_classes = [permissions.IsAuthenticatedOrReadOnly]

    def get_queryset(self):
        listings = super().get_queryset()
        params = self.request.query_params
        if q := params.get("q"):
            listings = listings.filter(Q(title__icontains=q) | Q(description__icontains=q))
        if category := params.get("category"):
            listings = listings.filter(category__slug=category)
        if min_price := params.get("min_price"):
            listings = listings.filter(price__gte=min_price)
        if max_price := params.get("max_price"):
            listings = listings.filter(price__lte=max_price)
        if near := params.get("near"):
            lat, lng = (float(part) for part in near.split(","))
            dlat = float(params.get("radius_km", 10)) / 111.2
            dlng = dlat / math.cos(math.radians(lat))
            listings = listings.filter(
                lat__range=(lat - dlat, lat + dlat), lng__range=(lng - dlng, lng + dlng)
            )
        return listings
