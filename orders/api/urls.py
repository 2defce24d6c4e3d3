from django.urls import path

from marketplace.api.routers import Router
from orders.api.notifications import NotificationViewSet
from orders.api.payments import PaymentWebhookView
from orders.api.views import OrderViewSet

router = Router()
router.register("orders", OrderViewSet, basename="order")
router.register("notifications", NotificationViewSet, basename="notification")

urlpatterns = [
    *router.urls,
    path("payments/webhook/", PaymentWebhookView.as_view(), name="payment-webhook"),
]
