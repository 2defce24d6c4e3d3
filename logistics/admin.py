from django import forms
from django.contrib import admin, messages
from django.db.models import Q

from listings.models import Listing
from listings.services import listings_refresh
from logistics import selectors
from logistics.models import Route, ScheduleRun, ServiceCenter, Stop, Vehicle, Village
from logistics.models.routes import whole_minutes
from logistics.services import fleet
from logistics.services.schedule import schedule_days_again
from logistics.services.shipments import stop_unlock
from marketplace.admin_site import ReadOnlyAdminMixin, ServiceSavesMixin, rows_for
from marketplace.exceptions import DomainError

# What the listings of a village's farmers copy of it (their place, and words to find them by).
VILLAGE_FIELDS_IN_LISTINGS = frozenset({"name", "lat", "lng"})
# What a center's day plans rely on: its place (the depot), its hours and its roads.
CENTER_FIELDS_IN_PLANS = frozenset(
    {"lat", "lng", "opens_at", "closes_at", "average_speed_kmh", "detour_factor"}
)


def _of_their_center(request, center_id: int | None) -> bool:
    """Whether the admin user may change a row of this center: operators (superusers) any
    center's; a center's staff their own only, as the API lets them change only their
    fleet. Another center's hours, place and villages are its day plans' (a change plans
    its days again): they see them, as anyone sees centers and villages, read only."""
    return request.user.is_superuser or center_id == request.user.service_center_id


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

    def has_change_permission(self, request, obj=None) -> bool:
        allowed = super().has_change_permission(request, obj)
        return allowed and (obj is None or _of_their_center(request, obj.pk))

    def has_delete_permission(self, request, obj=None) -> bool:
        allowed = super().has_delete_permission(request, obj)
        return allowed and (obj is None or _of_their_center(request, obj.pk))

    def save_model(self, request, obj, form, change) -> None:
        super().save_model(request, obj, form, change)
        if change and CENTER_FIELDS_IN_PLANS & set(form.changed_data):
            runs = schedule_days_again(center=obj, routes=Route.objects.filter(service_center=obj))
            if runs:
                days = ", ".join(f"{run.date:%Y-%m-%d}" for run in runs)
                self.message_user(request, f"Days planned again with the change: {days}.")

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

    def has_change_permission(self, request, obj=None) -> bool:
        allowed = super().has_change_permission(request, obj)
        return allowed and (obj is None or _of_their_center(request, obj.service_center_id))

    def has_delete_permission(self, request, obj=None) -> bool:
        allowed = super().has_delete_permission(request, obj)
        return allowed and (obj is None or _of_their_center(request, obj.service_center_id))

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        """A center's staff add villages to their own center and move none to another."""
        if db_field.name == "service_center" and not request.user.is_superuser:
            kwargs["queryset"] = ServiceCenter.objects.filter(pk=request.user.service_center_id)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def save_model(self, request, obj, form, change) -> None:
        super().save_model(request, obj, form, change)
        if change:
            _village_saved(obj, form.changed_data)


@admin.register(Stop)
class StopAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """View-only (stops are written by plans and completed through the API); a delivery stop
    locked by too many wrong codes is opened again here, after staff reviewed it."""

    list_display = ("id", "route", "sequence", "kind", "status", "wrong_code_attempts", "eta")
    list_filter = ("status", "kind", "route__service_center")
    list_select_related = ("route",)
    actions = ["unlock"]

    def get_queryset(self, request):
        return rows_for(
            request,
            super().get_queryset(request),
            lambda center_id: Q(route__service_center_id=center_id),
        )

    def has_unlock_permission(self, request) -> bool:
        return request.user.has_perm(f"{self.opts.app_label}.change_{self.opts.model_name}")

    @admin.action(
        description="Unlock selected stops (wrong codes reviewed)", permissions=["unlock"]
    )
    def unlock(self, request, queryset) -> None:
        opened = [pk for pk in queryset.values_list("pk", flat=True) if stop_unlock(stop_id=pk)]
        skipped = queryset.exclude(pk__in=opened).count()
        if opened:
            self.message_user(request, f"{len(opened)} stop(s) unlocked.", messages.SUCCESS)
        if skipped:
            self.message_user(request, f"{skipped} stop(s) were not locked.", messages.WARNING)


def _now(figure: str, description: str):
    """A column of the run's routes as they are now: selectors.schedule_runs_now's
    `now_<figure>` annotation."""

    @admin.display(description=description, ordering=f"now_{figure}")
    def show(self, run: ScheduleRun):
        return getattr(run, f"now_{figure}")

    return show


@admin.register(ScheduleRun)
class ScheduleRunAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """View-only (staff plan days through the API): each run with its summary, what the plan
    made, beside what its routes are now (the API's `routes_now`)."""

    list_display = (
        "id",
        "service_center",
        "date",
        "status",
        "progress",
        "routes_now",
        "stops_now",
        "stops_open_now",
        "stops_failed_now",
        "distance_km_now",
        "duration_min_now",
        "driving_min_now",
        "finished_at",
    )
    list_filter = ("status", "service_center", "date")
    list_select_related = ("service_center", "requested_by")
    readonly_fields = (
        "routes_now",
        "vehicles_used_now",
        "stops_now",
        "stops_open_now",
        "stops_failed_now",
        "distance_km_now",
        "duration_min_now",
        "driving_min_now",
        "cost_now",
    )

    def get_queryset(self, request):
        return rows_for(
            request,
            selectors.schedule_runs_now(super().get_queryset(request)),
            lambda center_id: Q(service_center_id=center_id),
        )

    routes_now = _now("routes", "routes now")
    vehicles_used_now = _now("vehicles_used", "vehicles used now")
    stops_now = _now("stops", "stops now")
    stops_open_now = _now("stops_open", "stops open")
    stops_failed_now = _now("stops_failed", "stops failed")
    distance_km_now = _now("distance_km", "km now")
    duration_min_now = _now("duration_min", "minutes now")
    cost_now = _now("cost", "cost now")

    @admin.display(description="driving minutes now", ordering="now_driving_s")
    def driving_min_now(self, run: ScheduleRun) -> int | None:
        """As the API's routes_now: none when a route of the run has no driving figure."""
        return whole_minutes(run.now_driving_s)


class VehicleForm(forms.ModelForm):
    def clean(self):
        """The fleet's own rules (fleet.vehicle_check) as form errors on their fields, the
        upper capacity bound among them, which no column enforces; and a name another
        vehicle of the center has, which the change form (no center field) would not look
        for. The unique index still decides when two forms race: the loser's page says so and
        saves nothing (ServiceSavesMixin)."""
        cleaned = super().clean()
        if not self.errors:  # each field well formed: the rules between them
            try:
                fleet.vehicle_check(Vehicle(**{f: cleaned[f] for f in fleet.UPDATABLE - {"name"}}))
            except DomainError as error:
                self.add_error(error.extra["field"], error.detail)
        center = cleaned.get("service_center") or getattr(self.instance, "service_center", None)
        name = cleaned.get("name")
        if center and name:
            others = Vehicle.objects.filter(service_center=center, name=name)
            if others.exclude(pk=self.instance.pk).exists():
                self.add_error("name", f"This center already has a vehicle named {name!r}.")
        return cleaned


@admin.register(Vehicle)
class VehicleAdmin(ServiceSavesMixin, admin.ModelAdmin):
    """A center's fleet, as the API's vehicles: staff add and change their own center's,
    operators any center's, each write through logistics.services.fleet (a change that
    plans rely on plans their days again; a new price per km prices the routes not yet on
    the road). Vehicles are retired by the action, which deletes one no route refers to and
    deactivates the others, never by the delete page: routes keep their vehicle."""

    form = VehicleForm
    list_display = (
        "name",
        "service_center",
        "capacity_kg",
        "refrigerated",
        "shift_start",
        "shift_end",
        "cost_per_km",
        "active",
    )
    list_filter = ("active", "refrigerated", "service_center")
    search_fields = ("name",)
    list_select_related = ("service_center",)
    actions = ["retire"]

    def get_queryset(self, request):
        return rows_for(
            request,
            super().get_queryset(request),
            lambda center_id: Q(service_center_id=center_id),
        )

    def get_readonly_fields(self, request, obj=None):
        return ("service_center",) if obj is not None else ()  # no service moves a vehicle

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        """A center's staff add vehicles to their own center only."""
        if db_field.name == "service_center" and not request.user.is_superuser:
            kwargs["queryset"] = ServiceCenter.objects.filter(pk=request.user.service_center_id)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # retired by the action

    def has_retire_permission(self, request) -> bool:
        return request.user.has_perm(f"{self.opts.app_label}.delete_{self.opts.model_name}")

    def save_model(self, request, obj, form, change) -> None:
        given = {name: form.cleaned_data[name] for name in fleet.UPDATABLE & set(form.fields)}
        if change:
            changes = {name: given[name] for name in form.changed_data if name in given}
            if changes:
                fleet.vehicle_update(vehicle_id=obj.pk, changes=changes)
            return
        added = fleet.vehicle_create(center_id=obj.service_center_id, **given)
        obj.pk, obj._state.adding = added.pk, False  # the admin's log and redirect name it

    @admin.action(description="Retire selected vehicles", permissions=["retire"])
    def retire(self, request, queryset) -> None:
        deleted = deactivated = 0
        for pk in queryset.values_list("pk", flat=True):
            try:
                kept = fleet.vehicle_deactivate(vehicle_id=pk)
            except DomainError:  # deleted meanwhile
                continue
            if kept is None:
                deleted += 1
            else:
                deactivated += 1
        if deleted:
            self.message_user(request, f"{deleted} vehicle(s) deleted.", messages.SUCCESS)
        if deactivated:
            self.message_user(
                request,
                f"{deactivated} vehicle(s) deactivated: routes refer to them.",
                messages.SUCCESS,
            )
