"""A test-only URLconf: one view per role permission, to test the role checks and the 403 shape."""

from django.urls import path
from rest_framework.response import Response
from rest_framework.views import APIView

from marketplace.api.permissions import IsBuyer, IsCenterStaff, IsFarmer


def _view(permission):
    class View(APIView):
        permission_classes = [permission]

        def get(self, request):
            return Response({"ok": request.user.role})

    return View.as_view()


urlpatterns = [
    path("farmer-only/", _view(IsFarmer)),
    path("buyer-only/", _view(IsBuyer)),
    path("staff-only/", _view(IsCenterStaff)),
]
