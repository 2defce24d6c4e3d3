from django.apps import AppConfig


class ApiConfig(AppConfig):
    """API conventions shared by every app; holds the idempotency records."""

    name = "marketplace.api"
    label = "api"
    verbose_name = "API"
