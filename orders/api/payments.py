from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    inline_serializer,
)
from rest_framework import serializers
from rest_framework.parsers import JSONParser
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from orders import payments

NOTICE = inline_serializer(
    "PaymentNotice",
    {
        "id": serializers.CharField(
            help_text="The provider's event id; sent twice, it counts once."
        ),
        "type": serializers.CharField(
            help_text="payment.succeeded (the buyer paid the order's total) or "
            "refund.succeeded (money paid back to the buyer); others are kept and change "
            "nothing"
        ),
        "order": serializers.IntegerField(),
        "amount": serializers.DecimalField(max_digits=12, decimal_places=2),
        "currency": serializers.CharField(help_text="CNY"),
    },
)
RECEIVED = inline_serializer(
    "PaymentReceived",
    {
        "received": serializers.BooleanField(),
        "order": serializers.IntegerField(),
        "status": serializers.CharField(help_text="The order's status after the notice."),
    },
)


class PaymentWebhookView(APIView):
    """The payment provider's notifications. No user signs in here: the provider proves
    itself by signing the raw body (see orders.payments.SandboxProvider)."""

    authentication_classes = []
    permission_classes = [AllowAny]
    parser_classes = [JSONParser]  # what the schema advertises; the view reads the raw body
    reads_raw_body = True  # so no 415: no parser runs (marketplace.api.schema)

    @extend_schema(
        operation_id="payments_webhook",
        request=NOTICE,
        parameters=[
            OpenApiParameter(
                "X-Signature",
                OpenApiTypes.STR,
                OpenApiParameter.HEADER,
                required=True,
                description='t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + raw body)>',
            )
        ],
        responses={
            200: RECEIVED,
            400: OpenApiResponse(
                description="parse_error, unknown_order, payment_amount_mismatch or "
                "refund_amount_invalid; nothing was recorded"
            ),
            401: OpenApiResponse(
                description="invalid_signature or signature_expired; nothing was recorded"
            ),
            409: OpenApiResponse(
                description="event_id_reused: this event id came before with another "
                "order, kind or amount; nothing was recorded"
            ),
        },
    )
    def post(self, request: Request) -> Response:
        # The exact bytes the provider signed; request.data (parsed, re-serialized) is never
        # read, so no parser runs before the signature is checked.
        raw_body = request.body
        provider = payments.get_provider()
        provider.verify(request.headers, raw_body)
        notice = provider.parse(raw_body)
        order = payments.payment_record(notice=notice)
        return Response({"received": True, "order": order.pk, "status": order.status})
