from decimal import Decimal

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.actions import delete_selected as django_delete_selected
from django.contrib.auth import get_permission_codename
from django.core.exceptions import ValidationError
from django.db.models import Q
from django.http import HttpResponseRedirect
from django.urls import reverse
from django.utils.html import format_html

from listings import services
from listings.api.serializers import ListingWriteSerializer
from listings.models import Category, Listing, ListingPhoto, ListingStatus
from marketplace.admin_site import ServiceSavesMixin, rows_for
from marketplace.exceptions import DomainError

_ARCHIVED_INSTEAD = "{}: ordered meanwhile, so archived instead of deleted."


@admin.register(Category)
class CategoryAdmin(admin.ModelAdmin):
    list_display = ("slug", "name", "name_zh", "position")
    list_editable = ("position",)
    search_fields = ("slug", "name", "name_zh")

    def save_model(self, request, obj, form, change) -> None:
        super().save_model(request, obj, form, change)
        if change and {"slug", "name", "name_zh"} & set(form.changed_data):
            # its listings are found by these words too
            services.listings_refresh(listings=Listing.objects.filter(category=obj))


class ListingPhotoInline(admin.TabularInline):
    """Photos are added through the API, which checks and re-encodes them; here they are
    only shown."""

    model = ListingPhoto
    extra = 0
    can_delete = False  # deleting the row would leave its files behind
    fields = ("preview", "image", "width", "height", "created_at")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="thumbnail")
    def preview(self, photo: ListingPhoto) -> str:
        if not photo.thumbnail:
            return "-"
        return format_html('<img src="{}" alt="" style="max-height: 80px">', photo.thumbnail.url)


class ListingForm(forms.ModelForm):
    """The stock carries the value the page showed (a hidden initial): saved, the form
    compares with that, not with the row as it is by then, which orders placed meanwhile
    have lowered. Else a page left open and saved for another field puts their stock back
    on sale, and a new stock typed there overwrites what they took (listing_update refuses
    it against the stock shown)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "quantity_available" in self.fields:  # not for whoever may only view the listing
            self.fields["quantity_available"].show_hidden_initial = True

    def clean(self):
        """The fields changed are held to the rules a farmer's PATCH is (the write
        serializer's): a harvest within a year of today, stock and shelf life within their
        bounds. The columns alone took a harvest typed as 2062, picked up then, or one whose
        goods spoil past the last date there is (an order of it was a 500)."""
        cleaned = super().clean()
        fields = ListingWriteSerializer().fields
        changed = {
            name: cleaned[name] for name in self.changed_data if name in fields and name in cleaned
        }
        if "category" in changed:
            changed["category"] = changed["category"].slug
        checked = ListingWriteSerializer(data=changed, partial=True)
        if not checked.is_valid():
            for name, problems in checked.errors.items():
                self.add_error(name, [str(problem) for problem in problems])
        if "harvest_date" in changed and "harvest_date" in cleaned and self.instance.pk:
            # listing_update checks it again under its locks; here for the form's error
            try:
                services.listing_check_harvest(
                    listing=self.instance, harvest_date=cleaned["harvest_date"]
                )
            except DomainError as error:
                self.add_error("harvest_date", error.detail)
        return cleaned

    def stock_shown(self) -> Decimal | None:
        stock = self["quantity_available"]
        shown = self.data.get(stock.html_initial_name)
        try:
            return stock.field.to_python(shown) if shown is not None else None
        except ValidationError:
            return None


@admin.register(Listing)
class ListingAdmin(ServiceSavesMixin, admin.ModelAdmin):
    """Edits go through listings.services like every other write: the form's fields through
    listing_update (search text, stock-driven status, archived listings frozen), status
    through the actions (listing_set_status). Farmer, pickup place and status are not
    editable here: no service changes the first two, and the third has its own rules."""

    list_display = (
        "title",
        "farmer",
        "category",
        "price",
        "quantity_available",
        "status",
        "harvest_date",
    )
    list_filter = (
        "status",
        "category",
        "is_organic",
        "needs_refrigeration",
        "village__service_center",
    )
    search_fields = ("title", "farmer__name", "farmer__phone")
    list_select_related = ("farmer", "category")
    readonly_fields = (
        "farmer",
        "village",
        "lat",
        "lng",
        "status",
        "search_vector",
        "created_at",
        "updated_at",
    )
    form = ListingForm
    inlines = [ListingPhotoInline]
    actions = ["pause", "publish", "archive", "delete_selected"]

    def has_add_permission(self, request) -> bool:
        return False  # farmers list produce through the API (listing_create)

    def get_queryset(self, request):
        return rows_for(
            request,
            super().get_queryset(request),
            lambda center_id: Q(village__service_center_id=center_id),
        )

    def save_model(self, request, obj, form, change) -> None:
        changes = {
            name: form.cleaned_data[name]
            for name in form.changed_data
            if name in services.EDITABLE_FIELDS
        }
        if changes:
            services.listing_update(listing=obj, stock_seen=form.stock_shown(), **changes)

    def get_deleted_objects(self, objs, request):
        """A listing's photos go with it, files and all. They have no admin page of their
        own, so Django asks no permission for them: here whoever may not delete photos
        deletes no listing that has some, on its delete page or through the action."""
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        photos = ListingPhoto._meta
        codename = get_permission_codename("delete", photos)
        if photos.verbose_name_plural in counts and not request.user.has_perm(
            f"{photos.app_label}.{codename}"
        ):
            perms_needed.add(photos.verbose_name)
        return deleted, counts, perms_needed, protected

    def delete_model(self, request, obj) -> None:
        # The admin has checked that no order refers to it; one being placed may yet, and
        # listing_delete then archives it instead (response_delete says so).
        services.listing_delete(listing=obj)

    @admin.action(description="Delete selected listings", permissions=["delete"])
    def delete_selected(self, request, queryset):
        """Django's bulk delete (its confirmation page first), each listing then going
        through listing_delete: one ordered since the page was shown is archived, and the
        messages say which were deleted and which archived."""
        confirmed = request.POST.get("post")
        if not confirmed or self.get_deleted_objects(queryset, request)[2]:
            # Django's: the page first, or 403 for whoever may not delete what goes with them
            return django_delete_selected(self, request, queryset)
        deleted, archived = [], []
        for listing in queryset.order_by("pk"):
            (archived if services.listing_delete(listing=listing) else deleted).append(listing)
        if deleted:
            self.log_deletions(request, deleted)
            self.message_user(request, f"{len(deleted)} listing(s) deleted.", messages.SUCCESS)
        for listing in archived:
            self.message_user(request, _ARCHIVED_INSTEAD.format(listing), messages.WARNING)
        return None

    def response_delete(self, request, obj_display, obj_id):
        if Listing.objects.filter(pk=obj_id).exists():
            self.message_user(request, _ARCHIVED_INSTEAD.format(obj_display), messages.WARNING)
            return HttpResponseRedirect(reverse("admin:listings_listing_changelist"))
        return super().response_delete(request, obj_display, obj_id)

    def _set_status(self, request, queryset, status: str, done: str) -> None:
        changed = 0
        for listing in queryset.order_by("pk"):
            try:
                services.listing_set_status(listing=listing, status=status)
            except DomainError as error:
                self.message_user(request, f"{listing}: {error.detail}", messages.ERROR)
            else:
                changed += 1
        if changed:
            self.message_user(request, f"{changed} listing(s) {done}.", messages.SUCCESS)

    @admin.action(description="Pause selected listings", permissions=["change"])
    def pause(self, request, queryset) -> None:
        self._set_status(request, queryset, ListingStatus.PAUSED, "paused")

    @admin.action(description="Publish selected listings", permissions=["change"])
    def publish(self, request, queryset) -> None:
        self._set_status(request, queryset, ListingStatus.ACTIVE, "published")

    @admin.action(description="Archive selected listings", permissions=["change"])
    def archive(self, request, queryset) -> None:
        self._set_status(request, queryset, ListingStatus.ARCHIVED, "archived")
