from django.contrib import admin

from listings.models import Listing
from listings.services import listings_refresh
from logistics.models import ServiceCenter, Village

# What the listings of a village's farmers copy of it (their place, and words to find them by).
VILLAGE_FIELDS_IN_LISTINGS = frozenset({"name", "lat", "lng"})


def _village_saved(village: Village, changed: list[str]) -> None:
    if VILLAGE_FIELDS_IN_LISTINGS & set(changed):
        listings_refresh(listings=Listing.objects.filter(farmer__village=village))


class VillageInline(admin.TabularInline):
    model = Village
    extra = 0
    fields = ("name", "county", "lat", "lng")


@admin.register(ServiceCenter)
class ServiceCenterAdmin(admin.ModelAdmin):
    list_display = ("name", "county", "lat", "lng", "opens_at", "closes_at", "average_speed_kmh")
    search_fields = ("name", "county")
    inlines = [VillageInline]

    def save_formset(self, request, form, formset, change) -> None:
        super().save_formset(request, form, formset, change)
        for village_form in formset.forms:
            if village_form.instance.pk and village_form.has_changed():
                _village_saved(village_form.instance, village_form.changed_data)


@admin.register(Village)
class VillageAdmin(admin.ModelAdmin):
    list_display = ("name", "county", "service_center", "lat", "lng")
    list_filter = ("service_center", "county")
    search_fields = ("name", "county")
    list_select_related = ("service_center",)

    def save_model(self, request, obj, form, change) -> None:
        super().save_model(request, obj, form, change)
        if change:
            _village_saved(obj, form.changed_data)
