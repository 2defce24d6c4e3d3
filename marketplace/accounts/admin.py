from collections.abc import Callable

from axes import admin as axes_admin
from axes.attempts import get_cool_off_threshold
from axes.models import AccessAttempt, AccessFailureLog, AccessLog
from django import forms
from django.contrib import admin
from django.contrib.auth.admin import GroupAdmin as DjangoGroupAdmin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import AdminPasswordChangeForm as DjangoAdminPasswordChangeForm
from django.contrib.auth.forms import AdminUserCreationForm
from django.contrib.auth.forms import UserChangeForm as DjangoUserChangeForm
from django.contrib.auth.models import Group
from django.db.models import Q
from django.db.models.constants import LOOKUP_SEP
from rest_framework_simplejwt.token_blacklist import admin as token_blacklist_admin
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken

from listings.services import listings_pause_for_farmer, listings_refresh_for_farmer
from logistics.models import Village
from marketplace.accounts.models import Role, User
from marketplace.accounts.phones import PHONE_AS_TYPED_MAX, normalize_phone
from marketplace.accounts.services import (
    FIELDS_COPIED_TO_LISTINGS,
    check_place,
    user_tokens_revoke,
)
from marketplace.admin_site import rows_for
from marketplace.exceptions import DomainError


class _PhoneInE164:
    """A phone typed here is stored as the API stores it (one person, one spelling), or is a
    form error. One left as it was stays as it is (createsuperuser stores what it is given)."""

    def clean_phone(self) -> str:
        # Not `changed_data`: it compares every field, and a value such as lat=sNaN raises
        # there before its own field refuses it.
        if self.cleaned_data["phone"] == self.initial.get("phone"):
            return self.cleaned_data["phone"]
        try:
            return normalize_phone(self.cleaned_data["phone"])
        except DomainError as error:
            raise forms.ValidationError(error.detail, code=error.code) from None


# As typed (`+86 139-0000-0001`), up to the length registration accepts; stored normalized.
PHONE_AS_TYPED = forms.CharField(max_length=PHONE_AS_TYPED_MAX)


class UserCreationForm(_PhoneInE164, AdminUserCreationForm):
    phone = PHONE_AS_TYPED

    def clean(self) -> dict:
        # The database's rule (user_staff_have_center) names is_superuser, which this form
        # does not show, so Django leaves the rule to the database: a 500 without this.
        cleaned = super().clean()
        if cleaned.get("role") == Role.STAFF and not cleaned.get("service_center"):
            # on the role when the center is not this admin user's to set (ACCESS_FIELDS)
            field = "service_center" if "service_center" in self.fields else "role"
            self.add_error(
                field, forms.ValidationError("Staff work at a service center.", code="required")
            )
        return cleaned


class UserChangeForm(_PhoneInE164, DjangoUserChangeForm):
    phone = PHONE_AS_TYPED

    def clean_role(self) -> str:
        role = self.cleaned_data["role"]
        user = self.instance  # as stored: the form writes it back only after cleaning
        if user.pk and role != user.role and (user.listings.exists() or user.orders.exists()):
            raise forms.ValidationError(
                "A user with listings or orders keeps their role.", code="role_not_allowed"
            )
        return role

    def clean(self) -> dict:
        """An exact place lies within reach of the village, as user_update_profile has it:
        goods are picked up and delivered there, and a farmer's listings are found there."""
        cleaned = super().clean()
        self._check_role_rules(cleaned)
        fields = ("village", "lat", "lng")
        if any(field in self.errors for field in fields):
            return cleaned
        village, lat, lng = (cleaned.get(field) for field in fields)
        try:
            check_place(village, lat, lng)
        except DomainError as error:
            self.add_error("lat", forms.ValidationError(error.detail, code=error.code))
        return cleaned

    def _check_role_rules(self, cleaned: dict) -> None:
        """The database's rules naming the role (user_farmer_buyer_have_village,
        user_only_buyers_have_kind), as form errors: where the role is read only (center
        staff, ACCESS_FIELDS), Django leaves every rule naming it to the database, a 500."""
        role = cleaned.get("role", self.instance.role)
        lives_in_village = role in (Role.FARMER, Role.BUYER)
        if lives_in_village and "village" in cleaned and cleaned["village"] is None:
            error = forms.ValidationError("Farmers and buyers live in a village.", code="required")
            self.add_error("village", error)
        if role != Role.BUYER and cleaned.get("buyer_kind"):
            error = forms.ValidationError("Only buyers have a buyer kind.", code="role_not_allowed")
            self.add_error("buyer_kind", error)


def _center_people(center_id: int) -> Q:
    """Users of the center: its staff, and the farmers and buyers of its villages."""
    return Q(service_center_id=center_id) | Q(village__service_center_id=center_id)


def _tried_by_center_people(center_id: int) -> Q:
    """django-axes' rows naming the phone of one of the center's people. `username` is the
    phone tried, in E.164 when it reads as one (lockout_username, so any spelling of a
    user's phone is the phone as stored), or the user's own phone on a sign-in."""
    return Q(username__in=User.objects.filter(_center_people(center_id)).values("phone"))


class _LoginRecordsOfCenter:
    """The phones tried and the addresses they came from: a center's staff see their
    center's people's; a phone that is nobody's, only operators."""

    def get_queryset(self, request):
        return rows_for(request, super().get_queryset(request), _tried_by_center_people)


class AccessAttemptAdmin(_LoginRecordsOfCenter, axes_admin.AccessAttemptAdmin):
    @admin.action(description="Clean up expired attempts", permissions=["delete"])
    def cleanup_expired_attempts(self, request, queryset) -> None:
        """django-axes' own deletes every expired attempt there is, whoever runs it and
        whatever is selected (so a center's staff cleared the others'): here those the
        admin user may see, and only for whoever may delete them."""
        # Expired: past the cool-off (AXES_USE_ATTEMPT_EXPIRATION is off). axes' threshold
        # reads request.axes_attempt_time, which only its login handling sets: None is now.
        request.axes_attempt_time = None
        expired = self.get_queryset(request).filter(
            attempt_time__lte=get_cool_off_threshold(request)
        )
        _, deleted = expired.delete()
        count = deleted.get(AccessAttempt._meta.label, 0)
        self.message_user(request, f"Cleaned up {count} expired access attempts.")


class AccessLogAdmin(_LoginRecordsOfCenter, axes_admin.AccessLogAdmin):
    pass


class AccessFailureLogAdmin(_LoginRecordsOfCenter, axes_admin.AccessFailureLogAdmin):
    pass


admin.site.unregister([AccessAttempt, AccessLog, AccessFailureLog])
admin.site.register(AccessAttempt, AccessAttemptAdmin)
admin.site.register(AccessLog, AccessLogAdmin)
admin.site.register(AccessFailureLog, AccessFailureLogAdmin)


def _people_of(user: str) -> Callable[[int], Q]:
    """Rows whose `user` is of the center: its staff, or a farmer or buyer of its villages."""
    return lambda center_id: (
        Q(**{f"{user}__service_center_id": center_id})
        | Q(**{f"{user}__village__service_center_id": center_id})
    )


class OutstandingTokenAdmin(token_blacklist_admin.OutstandingTokenAdmin):
    """simplejwt's, without the token itself: a live refresh token shown here would let
    anyone who may view this page act as its user for weeks. Nor filtered by it: Django
    takes a filter on any of the model's own fields from the URL (`?token__regex=^eyJ…`),
    and whether a row is listed would give the token away a character at a time."""

    fields = ("jti", "user", "created_at", "expires_at")

    def get_queryset(self, request):
        return rows_for(request, super().get_queryset(request), _people_of("user"))

    def get_readonly_fields(self, *args, **kwargs) -> tuple[str, ...]:
        return self.fields

    def lookup_allowed(self, lookup, value, request) -> bool:
        if lookup.split(LOOKUP_SEP)[0] == "token":
            return False  # Django answers 400
        return super().lookup_allowed(lookup, value, request)


class BlacklistedTokenAdmin(token_blacklist_admin.BlacklistedTokenAdmin):
    # The token by its id: a drop-down would list every outstanding token there is.
    raw_id_fields = ("token",)

    def get_queryset(self, request):
        return rows_for(request, super().get_queryset(request), _people_of("token__user"))

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        """A center's staff revoke their center's people's tokens only: typed by id, any
        other would be taken (and its user signed out)."""
        if db_field.name == "token":
            tokens = OutstandingToken.objects.all()
            kwargs["queryset"] = rows_for(request, tokens, _people_of("user"))
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


admin.site.unregister(OutstandingToken)
admin.site.register(OutstandingToken, OutstandingTokenAdmin)
admin.site.unregister(BlacklistedToken)
admin.site.register(BlacklistedToken, BlacklistedTokenAdmin)


class GroupForm(forms.ModelForm):
    """A group gets from a center's staff only permissions they hold themselves (their own
    or their groups'), Django's rule of thumb for delegated admin: else staff who may change
    groups widened their own group to anything, and themselves with it. Those it has already
    stay; operators give any."""

    editor: User | None = None  # the admin user, set by GroupAdmin.get_form

    def clean_permissions(self):
        permissions = self.cleaned_data["permissions"]
        if self.editor is None or self.editor.is_superuser:
            return permissions
        had = set(self.instance.permissions.all()) if self.instance.pk else set()
        held = self.editor.get_all_permissions()
        lacking = [
            permission
            for permission in permissions
            if permission not in had
            and f"{permission.content_type.app_label}.{permission.codename}" not in held
        ]
        if lacking:
            names = ", ".join(str(permission) for permission in lacking)
            raise forms.ValidationError(
                f"A group gets only permissions you have yourself, not: {names}.",
                code="permission_not_held",
            )
        return permissions


class GroupAdmin(DjangoGroupAdmin):
    form = GroupForm

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change, **kwargs)  # a class of its own
        form.editor = request.user
        return form


admin.site.unregister(Group)
admin.site.register(Group, GroupAdmin)


class AdminPasswordChangeForm(DjangoAdminPasswordChangeForm):
    """An operator's new password for a user signs them out of every device, as the user's
    own change does (user_tokens_revoke): the token pages then show the old tokens revoked."""

    def save(self, commit=True):
        user = super().save(commit=commit)
        if commit:
            user_tokens_revoke(user=user)
        return user


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    """Phones are stored normalized; a farmer's listings follow the farmer's place and name,
    as after a profile change through the API (user_update_profile)."""

    form = UserChangeForm
    add_form = UserCreationForm
    change_password_form = AdminPasswordChangeForm
    ordering = ("id",)
    list_display = ("phone", "name", "role", "village", "service_center", "is_active")
    list_filter = ("role", "is_active", "is_staff", "service_center")
    search_fields = ("phone", "name")
    list_select_related = ("village", "service_center")
    autocomplete_fields = ("village", "service_center")
    # Kept by Django (login, sign-up), not typed: a typed 0001-01-01 is before year 1 in UTC,
    # which PostgreSQL stores and Python cannot read back.
    readonly_fields = ("last_login", "date_joined")
    fieldsets = (
        (None, {"fields": ("phone", "password")}),
        (
            "Profile",
            {
                "fields": (
                    "name",
                    "role",
                    "village",
                    "service_center",
                    "address",
                    "lat",
                    "lng",
                    "buyer_kind",
                )
            },
        ),
        (
            "Access",
            {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")},
        ),
        ("Dates", {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = (
        (
            None,
            {
                "classes": ("wide",),
                "fields": (
                    "phone",
                    "name",
                    "role",
                    "village",
                    "service_center",
                    "password1",
                    "password2",
                ),
            },
        ),
    )

    actions = ("sign_out_everywhere",)
    # Who may use the admin and what for, and where staff work: an operator's to set. A
    # center's staff given the user pages (a farmer's name or phone to fix) would otherwise
    # make themselves operators, grant themselves any permission, or move to another center.
    ACCESS_FIELDS = ("is_staff", "is_superuser", "groups", "user_permissions", "service_center")

    def get_readonly_fields(self, request, obj=None) -> tuple[str, ...]:
        readonly = tuple(super().get_readonly_fields(request, obj))
        if request.user.is_superuser:
            return readonly
        # a role changed, staff would leave their center, or a farmer or buyer join one
        return readonly + self.ACCESS_FIELDS + (("role",) if obj is not None else ())

    def get_queryset(self, request):
        return rows_for(
            request,
            super().get_queryset(request),
            _center_people,
        )

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        """A center's staff place farmers and buyers in their own center's villages: one of
        another center's village is that center's (as VillageAdmin moves no village)."""
        if db_field.name == "village" and not request.user.is_superuser:
            center_id = request.user.service_center_id
            kwargs["queryset"] = Village.objects.filter(service_center_id=center_id)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def save_model(self, request, obj, form, change) -> None:
        super().save_model(request, obj, form, change)
        moved = FIELDS_COPIED_TO_LISTINGS & set(form.changed_data)
        if change and obj.role == Role.FARMER and moved:
            listings_refresh_for_farmer(farmer=obj)
        if change and "is_active" in form.changed_data and not obj.is_active:
            # Refused while inactive anyway; revoked, they stay refused once reactivated.
            user_tokens_revoke(user=obj)
            if obj.role == Role.FARMER:
                listings_pause_for_farmer(farmer=obj)

    @admin.action(description="Sign out of every device", permissions=["change"])
    def sign_out_everywhere(self, request, queryset) -> None:
        revoked = sum(user_tokens_revoke(user=user) for user in queryset)
        self.message_user(request, f"{revoked} refresh tokens revoked.")
