from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.parsers import MultiPartParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from listings import photos, selectors
from listings.api.serializers import ListingPhotoSerializer
from marketplace.api.permissions import IsFarmer


class ListingPhotoUploadSerializer(serializers.Serializer):
    # A plain file: listings.photos decodes it once and answers with its own error codes.
    image = serializers.FileField(help_text="JPEG, PNG or WebP")


class ListingPhotoUploadView(APIView):
    """A farmer adds a photo to one of their listings (at most 8). It is stored re-encoded,
    without metadata; thumbnail_url stays null until a worker has made the thumbnail."""

    parser_classes = [MultiPartParser]
    permission_classes = [IsAuthenticated, IsFarmer]

    @extend_schema(
        request={"multipart/form-data": ListingPhotoUploadSerializer},
        responses={201: ListingPhotoSerializer},
    )
    def post(self, request, pk: int) -> Response:
        # Ownership first: another farmer's listing answers 404 before the body is read.
        listing = get_object_or_404(selectors.listing_owned_by(farmer=request.user), pk=pk)
        serializer = ListingPhotoUploadSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        photo = photos.listing_photo_add(listing=listing, upload=serializer.validated_data["image"])
        return Response(ListingPhotoSerializer(photo).data, status=status.HTTP_201_CREATED)


class ListingPhotoView(APIView):
    """A farmer takes a photo off one of their listings (its files go too); its slot is
    free for another upload."""

    permission_classes = [IsAuthenticated, IsFarmer]

    @extend_schema(
        request=None,
        responses={
            204: None,
            409: OpenApiResponse(
                description="listing_archived: an archived listing is frozen; nothing removed"
            ),
        },
    )
    def delete(self, request, pk: int, photo_id: int) -> Response:
        listing = get_object_or_404(selectors.listing_owned_by(farmer=request.user), pk=pk)
        photos.listing_photo_remove(listing=listing, photo_id=photo_id)
        return Response(status=status.HTTP_204_NO_CONTENT)
