import hashlib

from django.utils.http import parse_etags
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ErrorDetail, ValidationError
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from listings import selectors, services
from listings.api.serializers import (
    CategorySerializer,
    FarmerProfileSerializer,
    ListingCreateSerializer,
    ListingDetailSerializer,
    ListingSearchParamsSerializer,
    ListingSerializer,
    ListingUpdateSerializer,
    OwnListingsParamsSerializer,
)
from listings.models import Category, ListingStatus
from marketplace.api.filters import TRUE_OR_FALSE, true_or_false
from marketplace.api.permissions import IsFarmer
from marketplace.exceptions import DomainError

IF_MATCH = OpenApiParameter(
    "If-Match",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    description="The listing's ETag as last read (weak or strong), or *: the change is made "
    "only if the listing is still so, else 412 precondition_failed",
)
PRECONDITION_FAILED = OpenApiResponse(
    description="precondition_failed: the listing changed since the If-Match ETag was read "
    "(another phone's edit, an order, a photo); `etag` is its ETag now; nothing was changed"
)


class CategoryViewSet(viewsets.ReadOnlyModelViewSet):
    permission_classes = [AllowAny]
    serializer_class = CategorySerializer
    queryset = Category.objects.all()  # paginated as every list (one page: a short list)


class ListingViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Public search and detail; farmers create and change their own listings."""

    filter_backends = []  # search parameters are parsed by ListingSearchParamsSerializer
    serializer_class = ListingSerializer

    def get_permissions(self):
        if self.action in ("list", "retrieve"):
            return [AllowAny()]
        return [IsAuthenticated(), IsFarmer()]

    def _mine(self) -> bool:
        """?mine=true: the farmer's own listings; false or none: the public search. Anything
        else is 400 naming it (it was read as false: ?mine=yes answered the public search)."""
        try:
            return bool(true_or_false(self.request.query_params.get("mine")))
        except ValueError:
            detail = ErrorDetail(TRUE_OR_FALSE, code="invalid")
            raise ValidationError({"mine": [detail]}) from None

    def get_queryset(self):
        if self.action == "retrieve":
            return selectors.listing_detail_queryset(user=self.request.user)
        if self.action == "list" and self._mine():
            params = OwnListingsParamsSerializer(data=self.request.query_params.dict())
            params.is_valid(raise_exception=True)
            return selectors.listing_list_for_farmer(
                farmer=self.request.user, status=params.validated_data.get("status")
            )
        if self.action == "list":
            params = ListingSearchParamsSerializer(data=self.request.query_params.dict())
            params.is_valid(raise_exception=True)
            return selectors.listing_search(params.to_search())
        return selectors.listing_owned_by(farmer=self.request.user)

    def get_serializer_class(self):
        return ListingDetailSerializer if self.action == "retrieve" else ListingSerializer

    @extend_schema(
        parameters=[
            ListingSearchParamsSerializer,
            OpenApiParameter(
                "mine",
                bool,
                description="A farmer's own listings, any status; with it, a search "
                "parameter (q, category, …) is 400 not_with_mine",
            ),
            OpenApiParameter(
                "status",
                str,
                enum=ListingStatus.values,
                description="With mine=true: one status. Without it, any but active (what "
                "the search lists) is 400 mine_required",
            ),
        ],
        responses={
            200: ListingSerializer(many=True),
            400: OpenApiResponse(
                description="validation_error: a parameter not valid (`errors` names each, "
                "with its code): not_with_mine, a search parameter with mine=true; "
                "mine_required, a status but active without mine=true; near_required, "
                "radius_km or ordering=distance without near; invalid_range, min_price "
                "above max_price"
            ),
            401: OpenApiResponse(
                description="not_authenticated: mine=true with no bearer token; "
                "token_not_valid, signed_out, …: a bearer token no longer good"
            ),
            403: OpenApiResponse(description="permission_denied: mine=true from no farmer"),
        },
    )
    def list(self, request, *args, **kwargs):
        if self._mine():
            for permission in (IsAuthenticated(), IsFarmer()):
                if not permission.has_permission(request, self):
                    self.permission_denied(request, message=getattr(permission, "message", None))
            return super().list(request, *args, **kwargs)
        params = ListingSearchParamsSerializer(data=request.query_params.dict())
        params.is_valid(raise_exception=True)
        search = params.to_search()
        # Count and page on the listings table alone, then dress the page's rows.
        ids = self.paginate_queryset(selectors.listing_search(search).values_list("pk", flat=True))
        rows = selectors.listing_page(list(ids), near=search.near)
        return self.get_paginated_response(ListingSerializer(rows, many=True).data)

    def _etag(self, listing_id: int) -> str:
        """The ETag a GET of the listing answers now: ConditionalGetMiddleware's, the MD5 of
        the JSON body."""
        found = selectors.listing_detail_queryset(user=self.request.user).get(pk=listing_id)
        body = JSONRenderer().render(ListingDetailSerializer(found).data)
        return f'"{hashlib.md5(body, usedforsecurity=False).hexdigest()}"'

    def _if_match(self):
        """If-Match as a precondition of the service, checked once it has locked the listing:
        checked before, an edit of the farmer's other phone committed meanwhile would pass
        and be written over. It was not read at all. A weak tag matches as a strong one:
        only gzip makes them weak, and its opaque part is the MD5 of the same body."""
        header = self.request.headers.get("If-Match")
        if header is None or header.strip() == "*":  # * : any listing there is
            return None
        sent = {tag.removeprefix("W/") for tag in parse_etags(header)}

        def still_as_read(listing) -> None:
            if (now := self._etag(listing.pk)) not in sent:
                raise DomainError(
                    "precondition_failed",
                    "The listing changed since it was read; read it again.",
                    status_code=status.HTTP_412_PRECONDITION_FAILED,
                    extra={"etag": now},
                )

        return still_as_read

    def _detail(self, listing, status_code=status.HTTP_200_OK) -> Response:
        fresh = selectors.listing_detail_queryset(user=self.request.user).filter(pk=listing.pk)
        if (found := fresh.first()) is None:  # deleted (by another phone) since this wrote
            raise DomainError("not_found", "No such listing.", status_code=404)
        return Response(ListingDetailSerializer(found).data, status=status_code)

    @extend_schema(
        request=ListingCreateSerializer,
        responses={
            201: ListingDetailSerializer,
            409: OpenApiResponse(
                description="farmer_inactive: the account was deactivated meanwhile; nothing "
                "was listed"
            ),
        },
    )
    def create(self, request):
        serializer = ListingCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        listing = services.listing_create(farmer=request.user, **data)
        return self._detail(listing, status.HTTP_201_CREATED)

    @extend_schema(
        request=ListingUpdateSerializer,
        parameters=[IF_MATCH],
        responses={
            200: ListingDetailSerializer,
            412: PRECONDITION_FAILED,
            409: OpenApiResponse(
                description="listing_archived: an archived listing is frozen; "
                "unit_in_open_orders: orders not yet over hold its stock in its unit, which "
                "stays until they are; stock_changed: orders took stock since the "
                "quantity_seen sent, `now` is the stock; harvest_after_pickup: goods routed "
                "and still at the farm are to be picked up before the new harvest_date, "
                "`orders` names each such line's order, line and pickup_date (turn them "
                "down, or keep the date); nothing was changed"
            ),
        },
    )
    def partial_update(self, request, pk=None):
        listing = self.get_object()
        serializer = ListingUpdateSerializer(
            data=request.data, partial=True, context={"listing": listing}
        )
        serializer.is_valid(raise_exception=True)
        changes = dict(serializer.validated_data)
        stock_seen = changes.pop("quantity_seen", None)
        listing = services.listing_update(
            listing=listing, stock_seen=stock_seen, precondition=self._if_match(), **changes
        )
        return self._detail(listing)

    @extend_schema(
        parameters=[IF_MATCH],
        responses={200: ListingDetailSerializer, 204: None, 412: PRECONDITION_FAILED},
    )
    def destroy(self, request, pk=None):
        """Deletes a listing nobody ordered (204); archives one that orders refer to (200)."""
        archived = services.listing_delete(listing=self.get_object(), precondition=self._if_match())
        if archived is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return self._detail(archived)

    def _set_status(self, new_status: str) -> Response:
        listing = services.listing_set_status(
            listing=self.get_object(), status=new_status, precondition=self._if_match()
        )
        return self._detail(listing)

    @extend_schema(
        request=None,
        parameters=[IF_MATCH],
        responses={200: ListingDetailSerializer, 412: PRECONDITION_FAILED},
    )
    @action(detail=True, methods=["post"])
    def publish(self, request, pk=None):
        """Draft or paused → active (sold out when there is no stock)."""
        return self._set_status(ListingStatus.ACTIVE)

    @extend_schema(
        request=None,
        parameters=[IF_MATCH],
        responses={200: ListingDetailSerializer, 412: PRECONDITION_FAILED},
    )
    @action(detail=True, methods=["post"])
    def pause(self, request, pk=None):
        return self._set_status(ListingStatus.PAUSED)

    @extend_schema(
        request=None,
        parameters=[IF_MATCH],
        responses={200: ListingDetailSerializer, 412: PRECONDITION_FAILED},
    )
    @action(detail=True, methods=["post"])
    def archive(self, request, pk=None):
        return self._set_status(ListingStatus.ARCHIVED)


class FarmerProfileViewSet(mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """GET /api/v1/farmers/{id}/: a farmer's public profile."""

    permission_classes = [AllowAny]
    serializer_class = FarmerProfileSerializer

    def get_queryset(self):
        return selectors.farmer_public_profile_queryset()  # counts what is on offer today
