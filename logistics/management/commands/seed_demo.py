from django.core.management.base import BaseCommand, CommandError

from logistics import demo
from marketplace.accounts.models import Role


class Command(BaseCommand):
    help = (
        f"Load the demo county {demo.COUNTY}: service centers, villages, farmers, buyers and "
        "staff with known passwords, and ~1,000 listings of the farmers' produce. Safe to run "
        "again: rows already there are left as they are."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--if-allowed",
            action="store_true",
            help="where demo data is off (DEMO_DATA_ALLOWED=false), say so and load nothing, "
            "with no error (make run)",
        )

    def handle(self, *args, if_allowed: bool, **options):
        try:
            demo.refuse_unless_allowed()
        except CommandError as refused:
            if not if_allowed:
                raise
            self.stdout.write(f"{refused} No demo county loaded.")
            return
        steps = demo.seed_demo_county()
        self.stdout.write(f"Demo county {demo.COUNTY}:")
        for label, seeded in steps.items():
            self.stdout.write(f"  {label:<16} {len(seeded.rows):>4}  ({seeded.created} new)")
        if not any(seeded.created for seeded in steps.values()):
            self.stdout.write("  Nothing to add: the demo county was already loaded.")
        self._write_logins()

    def _write_logins(self) -> None:
        self.stdout.write("")
        self.stdout.write("Demo logins (POST /api/v1/auth/token/ with phone and password):")
        self.stdout.write(f"  {'role':<7} {'phone':<15} {'password':<17} name, place")
        for login in demo.demo_logins():
            self.stdout.write(
                f"  {login.role:<7} {login.phone:<15} {login.password:<17} "
                f"{login.name}, {login.place}"
            )
        self.stdout.write("")
        self.stdout.write("Every demo account of a role shares that role's password:")
        for role in (Role.STAFF, Role.FARMER, Role.BUYER):
            phones = demo.demo_phones(role)
            self.stdout.write(
                f"  {role:<7} {phones[0]} … {phones[-1]}  password {demo.PASSWORDS[role]}"
            )
