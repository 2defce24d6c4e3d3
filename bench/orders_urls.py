"""URLconf of the order benchmark: the app's URLs plus one bench-only endpoint, the frame.

POST /bench/frame/ goes through everything an order placement goes through before and after
its own work: gunicorn, the whole middleware stack, DRF's dispatch with the project's
default authentication (JWT, one read of the user) and permission, the JSON body parsed,
and a small JSON answer rendered with status 201. It does no order work: no validation,
no SQL of its own, no messages. orders_load.py measures it in the same run as the floor,
so the share of the floor's CPU that the framework alone takes is a number, not a guess.
"""

from django.urls import path
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from marketplace.urls import urlpatterns as app_urlpatterns


class FrameView(APIView):
    """Authenticated like every API view (the project's defaults); answers 201 with the
    user's id and how many lines the body had."""

    def post(self, request):
        return Response(
            {"user": request.user.pk, "lines": len(request.data.get("lines", []))},
            status=status.HTTP_201_CREATED,
        )


urlpatterns = [*app_urlpatterns, path("bench/frame/", FrameView.as_view())]
