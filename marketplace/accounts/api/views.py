from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle
from rest_framework.views import APIView
from rest_framework_simplejwt.tokens import RefreshToken

from marketplace.accounts import selectors, services
from marketplace.accounts.api.serializers import (
    ProfileUpdateSerializer,
    RegisterResponseSerializer,
    RegisterSerializer,
    UserSerializer,
)


class RegisterView(APIView):
    """A farmer or a buyer signs up with their phone number; answers with tokens too."""

    permission_classes = [AllowAny]
    authentication_classes = []
    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "register"

    @extend_schema(request=RegisterSerializer, responses={201: RegisterResponseSerializer})
    def post(self, request):
        serializer = RegisterSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user = services.user_register(**serializer.validated_data)
        refresh = RefreshToken.for_user(user)
        body = {
            **UserSerializer(user).data,
            "access": str(refresh.access_token),
            "refresh": str(refresh),
        }
        return Response(body, status=status.HTTP_201_CREATED)


class MeView(APIView):
    permission_classes = [IsAuthenticated]

    def _me(self, request):
        return selectors.user_with_places().get(pk=request.user.pk)

    @extend_schema(responses=UserSerializer)
    def get(self, request):
        return Response(UserSerializer(self._me(request)).data)

    @extend_schema(request=ProfileUpdateSerializer, responses=UserSerializer)
    def patch(self, request):
        serializer = ProfileUpdateSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        services.user_update_profile(user=self._me(request), **serializer.validated_data)
        return Response(UserSerializer(self._me(request)).data)
