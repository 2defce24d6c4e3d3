"""Users log in with their phone number and have one role.

Role-specific profile data lives on the user row, guarded by database constraints: farmers
and buyers live in a village (their service center is the village's), staff belong to one
service center. One table keeps every "who is this and where" lookup a single row read.
"""

from decimal import Decimal

from django.contrib.auth.base_user import AbstractBaseUser, BaseUserManager
from django.contrib.auth.models import PermissionsMixin
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone


class Role(models.TextChoices):
    FARMER = "farmer", "Farmer"
    BUYER = "buyer", "Buyer"
    STAFF = "staff", "Service-center staff"


class BuyerKind(models.TextChoices):
    HOUSEHOLD = "household", "Household"
    SHOP = "shop", "Shop"
    RESTAURANT = "restaurant", "Restaurant"
    CANTEEN = "canteen", "Canteen"


class UserManager(BaseUserManager["User"]):
    use_in_migrations = True

    def create_user(self, phone: str, password: str | None = None, **fields) -> "User":
        user = self.model(phone=phone, **fields)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_superuser(self, phone: str, password: str | None = None, **fields) -> "User":
        """Operators: Django-admin access; their role is staff with no center of their own."""
        fields.setdefault("role", Role.STAFF)
        fields.update(is_staff=True, is_superuser=True)
        return self.create_user(phone, password, **fields)


class User(AbstractBaseUser, PermissionsMixin):
    phone = models.CharField(max_length=16, unique=True, help_text="E.164, e.g. +8613812345678")
    name = models.CharField(max_length=100)
    role = models.CharField(max_length=10, choices=Role.choices)
    village = models.ForeignKey(
        "logistics.Village", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    service_center = models.ForeignKey(
        "logistics.ServiceCenter",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="staff",
        help_text="Staff only: the center they work at.",
    )
    address = models.CharField(max_length=255, blank=True)
    lat = models.DecimalField(
        max_digits=9,
        decimal_places=6,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal(-90)), MaxValueValidator(Decimal(90))],
    )
    lng = models.DecimalField(
        max_digits=9,
        decimal_places=6,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal(-180)), MaxValueValidator(Decimal(180))],
    )
    buyer_kind = models.CharField(max_length=12, choices=BuyerKind.choices, blank=True)
    is_active = models.BooleanField(default=True)
    is_staff = models.BooleanField(default=False, help_text="May log into the Django admin.")
    date_joined = models.DateTimeField(default=timezone.now)
    sign_outs = models.PositiveIntegerField(
        default=0,
        editable=False,
        help_text="Times signed out of every device. Each token carries the count it was "
        "issued under; one issued before the last sign-out is refused.",
    )

    objects = UserManager()

    USERNAME_FIELD = "phone"
    REQUIRED_FIELDS = ["name"]

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(condition=Q(role__in=Role.values), name="user_role_known"),
            models.CheckConstraint(
                condition=~Q(role__in=[Role.FARMER, Role.BUYER]) | Q(village__isnull=False),
                name="user_farmer_buyer_have_village",
            ),
            models.CheckConstraint(
                condition=Q(role=Role.STAFF) | Q(service_center__isnull=True),
                name="user_only_staff_have_center",
            ),
            models.CheckConstraint(
                condition=~Q(role=Role.STAFF, is_superuser=False) | Q(service_center__isnull=False),
                name="user_staff_have_center",
            ),
            models.CheckConstraint(
                condition=Q(role=Role.BUYER) | Q(buyer_kind=""),
                name="user_only_buyers_have_kind",
            ),
            models.CheckConstraint(
                condition=Q(lat__isnull=True, lng__isnull=True)
                | Q(lat__isnull=False, lng__isnull=False),
                name="user_coordinates_both_or_neither",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.phone})"

    @property
    def home_service_center_id(self) -> int | None:
        """Staff: their center; farmers and buyers: their village's center."""
        if self.role == Role.STAFF:
            return self.service_center_id
        return self.village.service_center_id if self.village_id else None
