from django.core.management.base import BaseCommand, CommandError
from rest_framework.exceptions import ValidationError

from logistics.models import ServiceCenter
from marketplace.accounts import errors
from marketplace.accounts.models import User
from marketplace.accounts.services import user_create_staff
from marketplace.api.serializers import TextLineField
from marketplace.exceptions import DomainError


class Command(BaseCommand):
    help = "Create a service-center staff account."

    def add_arguments(self, parser):
        parser.add_argument("--phone", required=True)
        parser.add_argument("--password", required=True)
        parser.add_argument("--center", required=True, help="Service center id or exact name.")
        parser.add_argument("--name", default="", help="Defaults to '<center> staff'.")

    def handle(self, *args, phone, password, center, name, **options):
        try:
            lookup = {"pk": int(center)}
        except ValueError:
            lookup = {"name": center}
        try:
            service_center = ServiceCenter.objects.get(**lookup)
        except ServiceCenter.DoesNotExist as exc:
            raise CommandError(f"No service center {center!r}.") from exc
        try:
            user = user_create_staff(
                phone=phone,
                password=password,
                name=self._name(name) or f"{service_center.name} staff",
                service_center=service_center,
            )
        except DomainError as exc:
            raise CommandError(f"{exc.code}: {exc.detail}") from exc
        self.stdout.write(f"Created staff {user.phone} at {service_center.name} (id {user.pk}).")

    def _name(self, name: str) -> str:
        """The name read as register and /me/ read one (TextLineField): no control
        characters (a new line, a terminal escape), something visible; blank for none."""
        if not name.strip():
            return ""
        field = TextLineField(max_length=User._meta.get_field("name").max_length)
        try:
            return field.run_validation(name)
        except ValidationError as exc:
            raise CommandError(f"{errors.INVALID_NAME}: {exc.detail[0]}") from exc
