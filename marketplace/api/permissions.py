"""Role checks shared by every app's API."""

from rest_framework.permissions import BasePermission

from marketplace.accounts.models import Role


class _HasRole(BasePermission):
    role: Role
    message = "This action is not available to your role."

    def has_permission(self, request, view) -> bool:
        user = request.user
        return bool(user and user.is_authenticated and user.role == self.role)


class IsFarmer(_HasRole):
    role = Role.FARMER


class IsBuyer(_HasRole):
    role = Role.BUYER


class IsCenterStaff(_HasRole):
    """Staff of a service center. Which center's data they may touch is a queryset rule:
    other centers' objects are filtered out, so they answer 404, never 403."""

    role = Role.STAFF

    def has_permission(self, request, view) -> bool:
        return super().has_permission(request, view) and request.user.service_center_id is not None
