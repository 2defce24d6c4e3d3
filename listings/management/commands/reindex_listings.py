from django.core.management.base import BaseCommand

from listings.models import Listing
from listings.services import listings_refresh

BATCH = 500


class Command(BaseCommand):
    help = (
        "Write every listing's search text (and public place) again, as the code now builds "
        "it: after an upgrade that changed how text is folded for search (full-width letters "
        "and digits, since NFKC). A batch of listings at a time, each in a transaction of its "
        "own (locked as a placement locks them); archived listings stay as they are."
    )

    def handle(self, *args, **options):
        last, done = 0, 0
        while True:
            ids = list(
                Listing.objects.filter(pk__gt=last)
                .order_by("pk")
                .values_list("pk", flat=True)[:BATCH]
            )
            if not ids:
                break
            done += listings_refresh(listings=Listing.objects.filter(pk__in=ids))
            last = ids[-1]
        self.stdout.write(f"{done} listings indexed again.")
