"""listings_for_update: the rows, in key order, locked until the transaction ends."""

import threading
from decimal import Decimal

import pytest
from django.db import OperationalError, connection, connections, transaction
from django.forms.models import model_to_dict

from listings.models import Listing
from listings.selectors import listings_for_update
from tests.factories import create_listing


@pytest.mark.django_db
def test_the_listings_asked_for_come_in_key_order_as_the_orm_reads_them():
    first, second, _other = (create_listing(price=Decimal(p)) for p in ("1.50", "2.50", "3.50"))

    locked = listings_for_update([second.pk, first.pk, 999_999])

    assert [x.pk for x in locked] == [first.pk, second.pk]
    for got in locked:
        expected = Listing.objects.get(pk=got.pk)
        assert model_to_dict(got, exclude=["description"]) == model_to_dict(
            expected, exclude=["description"]
        )
        assert (got.created_at, got.updated_at) == (expected.created_at, expected.updated_at)
        assert got.get_deferred_fields() == {"description", "search_vector"}
        assert got.description == expected.description  # loads on access


@pytest.mark.django_db(transaction=True)
def test_the_rows_stay_locked_until_the_transaction_ends():
    listing = create_listing()
    locked_now = threading.Event()
    release = threading.Event()

    def hold() -> None:
        try:
            with transaction.atomic():
                listings_for_update([listing.pk])
                locked_now.set()
                release.wait(10)
        finally:
            connections.close_all()

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert locked_now.wait(10)
        with (
            pytest.raises(OperationalError, match="could not obtain lock"),
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            cursor.execute(
                "SELECT 1 FROM listings_listing WHERE id = %s FOR UPDATE NOWAIT", [listing.pk]
            )
    finally:
        release.set()
        holder.join()
    with transaction.atomic():  # free again once the holder committed
        assert [x.pk for x in listings_for_update([listing.pk])] == [listing.pk]
