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
        parser.add_argument(
            "--center",
            required=True,
            help="Service center: id:<id>, name:<exact name>, or either alone (digits that "
            "are one center's id and another's name are refused as ambiguous).",
        )
        parser.add_argument("--name", default="", help="Defaults to '<center> staff'.")

    def handle(self, *args, phone, password, center, name, **options):
        service_center = self._center(center)
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

    def _center(self, given: str) -> ServiceCenter:
        """The center `given` names: `id:<id>` by id, `name:<name>` by name, and otherwise
        by name or, when it is ASCII digits, by id. Digits that are one center's id and
        another's name are refused: int() took them for the id whatever the names (and took
        ١, ２, +7 and 1_0 for ids too)."""
        kind, _, value = given.partition(":")
        if kind in ("id", "name") and value:
            lookups = [(kind, value)]
        else:
            lookups = [("name", given)]
            if given.isascii() and given.isdigit():
                lookups.insert(0, ("id", given))
        found = {}
        for field, value in lookups:
            if field == "id" and not (value.isascii() and value.isdigit()):
                continue
            key = "pk" if field == "id" else field
            for center in ServiceCenter.objects.filter(**{key: value}):
                found.setdefault(center.pk, (center, f"{field}:{value}"))
        if not found:
            raise CommandError(f"No service center {given!r}.")
        if len(found) > 1:
            named = " and ".join(f"{spelt} ({center.name})" for center, spelt in found.values())
            raise CommandError(f"--center {given!r} is ambiguous: {named}; give one of these.")
        ((center, _),) = found.values()
        return center

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
