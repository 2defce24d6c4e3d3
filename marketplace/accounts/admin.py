from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin

from marketplace.accounts.models import User


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    ordering = ("id",)
    list_display = ("phone", "name", "role", "village", "service_center", "is_active")
    list_filter = ("role", "is_active", "is_staff", "service_center")
    search_fields = ("phone", "name")
    list_select_related = ("village", "service_center")
    autocomplete_fields = ("village", "service_center")
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
