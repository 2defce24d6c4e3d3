"""The admin site: Django's, answering 400 where a hand-edited URL or form held values its
lookups cannot take.

The admin hands values from the URL straight to the ORM: a filter such as
`?created_at__year=99999`, or `_selected_action=abc` in an action's POST. The ORM raises
ValueError (or ValidationError, or PostgreSQL a DataError) when the query is built or run,
inside the view or while its page is rendered, and Django answered 500; so did a form whose
number field was sent sNaN (InvalidOperation, before the field refuses it). Here every admin
view, ours and the installed apps' alike, turns those into 400 `bad_request`; the cause
stays in the log's traceback.
"""

from collections.abc import Callable
from decimal import InvalidOperation
from functools import wraps

from django.contrib import admin, messages
from django.contrib.admin.apps import AdminConfig
from django.core.exceptions import BadRequest, ValidationError
from django.db import DataError
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponseRedirect

from marketplace.exceptions import DomainError

# InvalidOperation: a form comparing a stored number with sNaN, before its field refuses it.
BAD_VALUE_ERRORS = (ValueError, ValidationError, DataError, InvalidOperation)


class AdminSite(admin.AdminSite):
    def admin_view(self, view, cacheable=False):
        @wraps(view)
        def refusing_bad_values(request, *args, **kwargs):
            try:
                response = view(request, *args, **kwargs)
                if hasattr(response, "render") and not response.is_rendered:
                    response.render()  # its queries run here: inside the try
            except BAD_VALUE_ERRORS as error:
                raise BadRequest(f"A value in the request does not fit: {error}") from error
            return response

        return super().admin_view(refusing_bad_values, cacheable)


class MarketplaceAdminConfig(AdminConfig):
    default_site = "marketplace.admin_site.AdminSite"


def rows_for(request: HttpRequest, queryset: QuerySet, of_center: Callable[[int], Q]) -> QuerySet:
    """`queryset` as the admin user may see it. Operators (superusers) see every center's
    rows; a center's staff given the admin see their center's (`of_center(center_id)`), as
    the API shows them, never another center's; anyone else with no center sees none."""
    user = request.user
    if user.is_superuser:
        return queryset
    if user.service_center_id is None:
        return queryset.none()
    return queryset.filter(of_center(user.service_center_id))


class ServiceSavesMixin:
    """For a ModelAdmin whose saves go through a service: a rule the service refuses and the
    form could not see (a row changed meanwhile, a race lost) raises DomainError inside the
    admin's transaction, which rolls back; the page is shown again with the error as a
    message, nothing saved."""

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except DomainError as error:
            self.message_user(request, error.detail, messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())


class ReadOnlyAdminMixin:
    """Shown, never added, changed or deleted here."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
