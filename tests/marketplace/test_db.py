"""marketplace.db.insert: what bulk_create writes, with its statement built once."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from marketplace.db import BATCH_ROWS, insert, select
from orders.models import Notification, Order, OrderEvent
from tests.factories import BuyerFactory

pytestmark = pytest.mark.django_db


def _order(buyer) -> Order:
    return Order(
        buyer=buyer,
        status="placed",
        delivery_method="home",
        delivery_village_id=buyer.village_id,
        delivery_lat=Decimal("30.100000"),
        delivery_lng=Decimal("120.200000"),
        payment_method="cod",
        subtotal=Decimal("12.30"),
        delivery_fee=Decimal("5.00"),
        total=Decimal("17.30"),
        delivery_code="012345",
    )


def test_rows_are_written_as_given_and_objects_get_their_keys_in_order():
    buyer = BuyerFactory()
    before = timezone.now()
    notes = [
        Notification(user=buyer, kind="order_placed", title=f"t{n}", body="b", data={"n": n})
        for n in range(3)
    ]

    insert(notes)

    assert [note.pk for note in notes] == sorted(note.pk for note in notes)
    assert all(not note._state.adding and note._state.db == "default" for note in notes)
    stored = {
        row["pk"]: row
        for row in Notification.objects.values("pk", "user", "title", "data", "attempts")
    }
    assert stored == {
        note.pk: {
            "pk": note.pk,
            "user": buyer.pk,
            "title": f"t{n}",
            "data": {"n": n},
            "attempts": 0,
        }
        for n, note in enumerate(notes)
    }
    created = Notification.objects.values_list("created_at", flat=True)
    assert all(before <= stamp <= timezone.now() for stamp in created)


def test_auto_now_fields_are_stamped_and_decimals_kept():
    order = _order(BuyerFactory())
    insert([order])

    row = Order.objects.get(pk=order.pk)
    assert row.created_at == order.created_at
    assert row.updated_at == order.updated_at
    assert order.created_at is not None
    assert (row.total, row.delivery_lat, row.delivery_code) == (
        Decimal("17.30"),
        Decimal("30.100000"),
        "012345",
    )


def test_a_related_object_saved_after_it_was_assigned_gives_its_key():
    buyer = BuyerFactory()
    order = _order(buyer)
    event = OrderEvent(order=order, to_status="placed", actor=buyer, reason="placed")
    insert([order])  # after the event was given the order, as bulk_create allows

    insert([event])

    assert OrderEvent.objects.get(pk=event.pk).order_id == order.pk


def test_an_unsaved_related_object_is_refused_and_nothing_written():
    order = _order(BuyerFactory())
    event = OrderEvent(order=order, to_status="placed", reason="placed")

    with pytest.raises(ValueError, match="unsaved related object 'order'"):
        insert([event])
    assert not OrderEvent.objects.exists()


@pytest.mark.parametrize("case", ["mixed models", "already saved"])
def test_only_new_objects_of_one_model_are_taken(case):
    buyer = BuyerFactory()
    saved = Notification.objects.create(user=buyer, kind="order_placed", title="t", body="b")
    others = {
        "mixed models": [_order(buyer)],
        "already saved": [saved],
    }[case]

    with pytest.raises(ValueError, match="new objects of one model"):
        insert([Notification(user=buyer, kind="order_placed", title="n", body="b"), *others])
    assert list(Notification.objects.values_list("pk", flat=True)) == [saved.pk]
    assert not Order.objects.exists()


def test_many_rows_go_in_statements_of_at_most_batch_rows():
    buyer = BuyerFactory()
    notes = [
        Notification(user=buyer, kind="order_placed", title=f"t{n}", body="b")
        for n in range(2 * BATCH_ROWS + 1)
    ]

    with CaptureQueriesContext(connection) as queries:
        insert(notes)

    inserts = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("INSERT")]
    assert [sql.count("), (") + 1 for sql in inserts] == [BATCH_ROWS, BATCH_ROWS, 1]
    titles = dict(Notification.objects.values_list("pk", "title"))
    assert titles == {note.pk: f"t{n}" for n, note in enumerate(notes)}


def test_nothing_to_insert_runs_no_statement():
    with CaptureQueriesContext(connection) as queries:
        insert([])
    assert queries.captured_queries == []


def test_fields_without_auto_now_keep_the_values_given():
    buyer = BuyerFactory()
    due = timezone.now() + timedelta(minutes=30)
    order = _order(buyer)
    order.payment_due_at = due
    insert([order])
    assert Order.objects.get(pk=order.pk).payment_due_at == due


def test_select_reads_instances_as_the_orm_does_with_deferred_fields_on_access():
    buyer = BuyerFactory()
    notes = [
        Notification(user=buyer, kind="order_placed", title=f"t{n}", body=f"b{n}", data={"n": n})
        for n in range(3)
    ]
    insert(notes)
    other = Notification(user=BuyerFactory(), kind="order_placed", title="x", body="y")
    insert([other])

    with CaptureQueriesContext(connection) as queries:
        found = select(
            Notification,
            'WHERE "user_id" = %s ORDER BY "id" DESC',
            [buyer.pk],
            defer=frozenset({"body"}),
        )

    assert len(queries.captured_queries) == 1
    assert '"body"' not in queries.captured_queries[0]["sql"]
    assert [note.pk for note in found] == [note.pk for note in reversed(notes)]
    expected = {note.pk: note for note in Notification.objects.filter(user=buyer)}
    for note in found:
        assert not note._state.adding
        assert note.get_deferred_fields() == {"body"}
        assert (note.title, note.data, note.created_at) == (
            expected[note.pk].title,
            expected[note.pk].data,
            expected[note.pk].created_at,
        )
        assert note.body == expected[note.pk].body  # loads on access


NOTES_OF_USER = "SELECT count(*) FROM orders_notification WHERE user_id = accounts_user.id"


def test_select_sets_each_annotation_read_with_the_row_its_parameters_first():
    buyer, other = BuyerFactory(), BuyerFactory()
    insert([Notification(user=buyer, kind="order_placed", title="a", body="b", data={})])

    with CaptureQueriesContext(connection) as queries:
        found = select(
            type(buyer),
            'WHERE "id" = ANY(%s) ORDER BY "id"',
            ["a", [buyer.pk, other.pk]],
            annotate=(
                ("notes", NOTES_OF_USER),
                ("starts_with_a", "%s = 'a'"),
            ),
        )

    assert len(queries.captured_queries) == 1
    assert [(user.pk, user.phone, user.notes, user.starts_with_a) for user in found] == [
        (buyer.pk, buyer.phone, 1, True),
        (other.pk, other.phone, 0, True),
    ]


@pytest.mark.parametrize(
    ("table", "column"),
    [
        ("orders_order", "hand_over_wrong_codes"),
        ("orders_order", "hand_over_last_wrong_code"),
        ("orders_order", "routed_at"),
        ("logistics_stop", "last_wrong_code"),
        ("logistics_schedulerun", "nightly"),
        ("logistics_schedulerun", "asked_again"),
        ("logistics_shipment", "booked_kg"),
        ("logistics_shipment", "cash_collected"),
    ],
)
def test_a_column_added_to_a_busy_table_has_a_default_in_the_database(table, column):
    """During a rolling deploy the processes of the release before insert rows without it
    (and so does SQL of our own, such as the orders benchmark's floor): NOT NULL without a
    default in the database, their orders, plans and stops would fail."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT is_nullable, column_default FROM information_schema.columns "
            "WHERE table_name = %s AND column_name = %s",
            [table, column],
        )
        ((nullable, default),) = cursor.fetchall()
    assert nullable == "YES" or default is not None


def test_requests_run_without_jit_compilation():
    """Compiling took about half of a staff list's count on 200k orders (EXPLAIN ANALYZE:
    JIT 590 ms of 1.2 s); the app's connections turn it off."""
    with connection.cursor() as cursor:
        cursor.execute("SHOW jit")
        assert cursor.fetchone() == ("off",)
