"""URLconf of the order benchmark: the app's URLs plus one bench-only endpoint, the frame.

POST /bench/frame/ goes through everything an order placement goes through before and after
its own work: gunicorn, the whole middleware stack, DRF's dispatch with the project's
default authentication (JWT, one read of the user) and permission, the JSON body parsed,
and a small JSON answer rendered with status 201. It does no order work: no validation,
no SQL of its own, no messages. orders_load.py measures it in the same run as the floor,
so the share of the floor's CPU that the framework alone takes is a number, not a guess.

POST /api/v1/bench/ceiling/ is the frame plus the floor's own transaction body
(bench/orders_floor.py), under /api/ so that a keyed request goes through the idempotency
middleware like an order: its lock, lookup, SAVEPOINT and stored answer. It answers 201
with the order's id and nothing else: no check of the request or the listings beyond the
floor's, no notification, no routing message, no serializer. No implementation of the
placement behind this framework costs less; orders_load.py runs it keyed as `ceiling`.
"""

from decimal import Decimal

from django.db import connection, transaction
from django.urls import path
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from bench import orders_floor
from marketplace.urls import urlpatterns as app_urlpatterns


class FrameView(APIView):
    """Authenticated like every API view (the project's defaults); answers 201 with the
    user's id and how many lines the body had."""

    def post(self, request):
        return Response(
            {"user": request.user.pk, "lines": len(request.data.get("lines", []))},
            status=status.HTTP_201_CREATED,
        )


class CeilingView(APIView):
    """The floor's statements for the body's lines (1 unit each) in a transaction of the
    view's own (a SAVEPOINT inside the middleware's, as order_place's), the delivery place
    the buyer's own; 201 with the order's id, 409 when a listing is short."""

    def post(self, request):
        user = request.user
        buyer = {"id": user.pk, "village": user.village_id, "lat": user.lat, "lng": user.lng}
        ids = [int(line["listing"]) for line in request.data["lines"]]
        with transaction.atomic(), connection.cursor() as cursor:
            order_id = orders_floor.place(cursor, buyer, ids, Decimal(1))
            if order_id is None:
                transaction.set_rollback(True)
                return Response({"code": "insufficient_stock"}, status=status.HTTP_409_CONFLICT)
        return Response({"id": order_id}, status=status.HTTP_201_CREATED)


urlpatterns = [
    *app_urlpatterns,
    path("bench/frame/", FrameView.as_view()),
    path("api/v1/bench/ceiling/", CeilingView.as_view()),
]
