from django.contrib import admin

from logistics.models import ServiceCenter, Village


class VillageInline(admin.TabularInline):
    model = Village
    extra = 0
    fields = ("name", "county", "lat", "lng")


@admin.register(ServiceCenter)
class ServiceCenterAdmin(admin.ModelAdmin):
    list_display = ("name", "county", "lat", "lng", "opens_at", "closes_at", "average_speed_kmh")
    search_fields = ("name", "county")
    inlines = [VillageInline]


@admin.register(Village)
class VillageAdmin(admin.ModelAdmin):
    list_display = ("name", "county", "service_center", "lat", "lng")
    list_filter = ("service_center", "county")
    search_fields = ("name", "county")
    list_select_related = ("service_center",)
