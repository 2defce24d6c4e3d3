"""Reads of accounts."""

from django.db.models import QuerySet

from marketplace.accounts.models import User


def user_with_places() -> QuerySet[User]:
    """Users with their village, its center and their own center in one query."""
    return User.objects.select_related("village__service_center", "service_center")
