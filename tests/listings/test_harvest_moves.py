"""A listing's harvest moved later than the pickup day of its goods already routed (and not
yet picked up) would send a driver for produce not yet harvested: refused, 409
`harvest_after_pickup` naming those orders' lines and days, nothing changed. The farmer
turns those lines down or keeps the date. Routing reads the harvest under a lock that such
a move waits for, and the other way round, so neither slips past the other."""

from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from listings.models import Listing
from listings.services import listing_update
from logistics.models import Shipment, ShipmentStatus
from logistics.services.routing import order_route
from orders import services as orders
from orders.models import OrderLine, OrderStatus
from tests.factories import BuyerFactory, FarmerFactory, StaffFactory, create_listing, place_order
from tests.listings.test_photos import wait_for_lock_waiters
from tests.logistics.test_shipments import complete, stop_for
from tests.orders.test_payments import in_thread

pytestmark = pytest.mark.django_db

LISTINGS = "/api/v1/listings/"
DAY = timedelta(days=1)


def growing(farmer, **fields):
    """A listing whose harvest is still ahead (in two days): its goods ordered are not in
    the farmer's hands until then."""
    return create_listing(farmer, unit="kg", harvest_date=timezone.localdate() + 2 * DAY, **fields)


def snapshot(listing):
    return Listing.objects.filter(pk=listing.pk).values().get()


def routed(*lines):
    """An order of `lines` (listings) by a buyer of the first one's village, routed: its
    goods have their pickup day. The order and its first line."""
    order = place_order(BuyerFactory(village=lines[0].village), *[(x, 2) for x in lines])
    order = order_route(order_id=order.pk)
    assert order.status == OrderStatus.CONFIRMED
    return order, order.lines.order_by("pk").first()


def pickup_day(order):
    return Shipment.objects.get(order=order).pickup_date  # one farmer's goods


def move_harvest(client, listing, day, **also):
    return client.patch(
        f"{LISTINGS}{listing.pk}/", {"harvest_date": str(day), **also}, format="json"
    )


def test_a_harvest_moved_past_the_pickup_day_of_goods_routed_is_refused(client_for):
    farmer = FarmerFactory()
    listing = growing(farmer)
    (first, first_line), (second, second_line) = routed(listing), routed(listing)
    waiting = place_order(BuyerFactory(village=listing.village), (listing, 1))  # not routed
    days = pickup_day(first), pickup_day(second)
    assert days[0] >= listing.harvest_date  # not before the harvest
    before = snapshot(listing)

    refused = move_harvest(client_for(farmer), listing, max(days) + DAY, price="4.00")

    assert refused.status_code == 409, refused.json()
    detail = (
        f"Goods of this listing are to be picked up before {max(days) + DAY}: order "
        f"{first.pk} on {days[0]}, order {second.pk} on {days[1]}. Turn those lines down "
        f"(POST /api/v1/orders/{{id}}/lines/{{line_id}}/reject/) or harvest by {min(days)}; "
        "nothing was changed."
    )
    assert refused.json() == {
        "type": "about:blank",
        "title": "Conflict",
        "status": 409,
        "code": "harvest_after_pickup",
        "detail": detail,
        "field": "harvest_date",
        "errors": [{"field": "harvest_date", "code": "harvest_after_pickup", "detail": detail}],
        "orders": [
            {"order": first.pk, "line": first_line.pk, "pickup_date": str(days[0])},
            {"order": second.pk, "line": second_line.pk, "pickup_date": str(days[1])},
        ],
    }
    assert snapshot(listing) == before
    assert waiting.pk not in [x["order"] for x in refused.json()["orders"]]


def test_a_harvest_moved_up_to_the_pickup_day_or_earlier_goes_through(client_for):
    farmer = FarmerFactory()
    listing = growing(farmer)
    order, _ = routed(listing)
    client = client_for(farmer)

    on_the_day = move_harvest(client, listing, pickup_day(order))
    assert (on_the_day.status_code, on_the_day.json()["harvest_date"]) == (
        200,
        str(pickup_day(order)),
    )
    earlier = move_harvest(client, listing, timezone.localdate() - 3 * DAY)
    assert (earlier.status_code, earlier.json()["harvest_date"]) == (
        200,
        str(timezone.localdate() - 3 * DAY),
    )


def test_a_harvest_moved_later_with_no_goods_routed_goes_through_and_routing_waits_for_it(
    client_for,
):
    """Orders placed but not yet routed have no pickup day: the harvest moves, and their
    pickup is booked from it."""
    farmer = FarmerFactory()
    listing = growing(farmer)
    placed = place_order(BuyerFactory(village=listing.village), (listing, 2))
    later = timezone.localdate() + 9 * DAY

    assert move_harvest(client_for(farmer), listing, later).status_code == 200

    order_route(order_id=placed.pk)
    assert pickup_day(placed) == later


def _reject_the_line(order, line, client_for):
    orders.order_line_reject(
        order_id=order.pk, line_id=line.pk, farmer=line.farmer, reason="not ripe yet"
    )


def _cancel(order, line, client_for):
    orders.order_cancel(order_id=order.pk, actor=order.buyer)


def _pick_up(order, line, client_for):
    """Picked up early, on a route of today (its day is ahead)."""
    shipment = Shipment.objects.get(order=order)
    staff = client_for(StaffFactory(service_center=shipment.origin_center))
    stop = stop_for(shipment, shipment.origin_center, "pickup")
    done = complete(staff, stop, outcome="done", weight_kg="4.000")
    assert done.status_code == 200, done.json()
    # picked up, and at the center (the buyer's too): it crosses no other
    assert Shipment.objects.get(pk=shipment.pk).status == ShipmentStatus.AT_CENTER


@pytest.mark.parametrize("goods_gone", [_reject_the_line, _cancel, _pick_up])
def test_a_harvest_moves_past_the_pickup_of_goods_no_longer_waiting_at_the_farm(
    client_for, goods_gone
):
    """The line turned down (the farmer's other listing still goes in that shipment), the
    order cancelled, or the goods picked up already: nobody calls for them any more."""
    farmer = FarmerFactory()
    listing, other = growing(farmer), growing(farmer)
    order, line = routed(listing, other)
    later = pickup_day(order) + 5 * DAY
    client = client_for(farmer)
    assert move_harvest(client, listing, later).status_code == 409

    goods_gone(order, line, client_for)
    moved = move_harvest(client, listing, later)

    assert (moved.status_code, moved.json()["harvest_date"]) == (200, str(later))


def test_only_the_listings_own_goods_count_not_another_farmers_in_the_order(client_for):
    """The order's other farm still waits for its pickup; this farmer's goods were picked
    up: the harvest moves."""
    farmer = FarmerFactory()
    listing = growing(farmer)
    neighbour = growing(FarmerFactory(village=listing.village))
    order, _ = routed(listing, neighbour)
    later = max(s.pickup_date for s in Shipment.objects.filter(order=order)) + 5 * DAY
    ours = Shipment.objects.get(order=order, farmer=farmer)
    staff = client_for(StaffFactory(service_center=ours.origin_center))
    stop = stop_for(ours, ours.origin_center, "pickup")
    assert complete(staff, stop, outcome="done", weight_kg="2.000").status_code == 200
    assert Shipment.objects.get(order=order, farmer=neighbour.farmer).status == "pending"

    moved = move_harvest(client_for(farmer), listing, later)

    assert (moved.status_code, moved.json()["harvest_date"]) == (200, str(later))


@pytest.mark.django_db(transaction=True)
def test_a_harvest_moved_while_its_order_is_routed_waits_for_it_and_is_refused(client_for):
    """The routing read the harvest as it was and books a pickup before the new one; the
    move waits for it to commit, then finds the pickup."""
    farmer = FarmerFactory()
    listing = growing(farmer)
    placed = place_order(BuyerFactory(village=listing.village), (listing, 2))
    later = timezone.localdate() + 9 * DAY
    client = client_for(farmer)
    with transaction.atomic():
        order_route(order_id=placed.pk)  # its shipment written, not yet committed
        moving, answer = in_thread(lambda: move_harvest(client, listing, later))
        assert wait_for_lock_waiters(1) == 1  # the move waits for the routing
    moving.join(timeout=30)

    [response] = answer
    assert (response.status_code, response.json()["code"]) == (409, "harvest_after_pickup")
    assert Listing.objects.get(pk=listing.pk).harvest_date == listing.harvest_date


@pytest.mark.django_db(transaction=True)
def test_an_order_routed_while_the_harvest_moves_waits_and_is_picked_up_after_it():
    farmer = FarmerFactory()
    listing = growing(farmer)
    placed = place_order(BuyerFactory(village=listing.village), (listing, 2))
    later = timezone.localdate() + 9 * DAY
    with transaction.atomic():
        listing_update(listing=listing, harvest_date=later)  # not yet committed
        routing, answer = in_thread(lambda: order_route(order_id=placed.pk))
        assert wait_for_lock_waiters(1) == 1  # the routing waits for the move
    routing.join(timeout=30)

    assert [type(a).__name__ for a in answer] == ["Order"], answer
    assert pickup_day(placed) == later


def test_a_listing_whose_harvest_is_in_moves_on_to_the_next_one(client_for):
    """Harvested (yesterday, or today): the goods ordered are in the farmer's hands, so a
    later date is the listing's next harvest, taken whatever the pickup days of those goods,
    which keep their day (each line keeps its own `spoils_on`)."""
    farmer = FarmerFactory()
    for harvested in (timezone.localdate() - DAY, timezone.localdate()):
        listing = create_listing(farmer, unit="kg", harvest_date=harvested)
        order, _ = routed(listing)
        day = pickup_day(order)
        next_harvest = day + 5 * DAY

        moved = move_harvest(client_for(farmer), listing, next_harvest)

        assert (moved.status_code, moved.json()["harvest_date"]) == (200, str(next_harvest))
        assert pickup_day(order) == day


def test_goods_of_an_earlier_harvest_do_not_hold_back_the_next_one(client_for):
    """Each line keeps the harvest it was ordered from: once the listing has moved on to its
    next harvest, still ahead, goods of the one before (in the farmer's hands, whatever
    their pickup day) do not count as waiting for it; that harvest's own goods do."""
    farmer = FarmerFactory()
    listing = create_listing(farmer, unit="kg", harvest_date=timezone.localdate() - DAY)
    earlier, earlier_line = routed(listing)
    assert earlier_line.harvest_round == listing.harvest_round == 0
    client = client_for(farmer)
    next_harvest = timezone.localdate() + DAY
    assert move_harvest(client, listing, next_harvest).status_code == 200
    listing.refresh_from_db()
    assert listing.harvest_round == 1  # the harvest was in: this is the next one
    this_one, this_line = routed(listing)
    assert this_line.harvest_round == 1
    later = max(pickup_day(earlier), pickup_day(this_one)) + DAY

    refused = move_harvest(client, listing, later)

    assert refused.status_code == 409, refused.json()
    assert refused.json()["orders"] == [
        {"order": this_one.pk, "line": this_line.pk, "pickup_date": str(pickup_day(this_one))}
    ]
    assert Listing.objects.get(pk=listing.pk).harvest_date == next_harvest
    this_line.reject_reason, this_line.status = "hail", "rejected"  # turned down
    this_line.save(update_fields=["reject_reason", "status"])

    moved = move_harvest(client, listing, later)

    assert (moved.status_code, moved.json()["harvest_date"]) == (200, str(later))
    assert pickup_day(earlier) < later


def test_a_harvest_put_off_before_its_goods_were_routed_still_holds_them(client_for):
    """Moved later while still ahead, the harvest is the same one: goods ordered before the
    move, and routed from the new date, wait for it as goods ordered after it do."""
    farmer = FarmerFactory()
    listing = growing(farmer)
    placed = place_order(BuyerFactory(village=listing.village), (listing, 2))
    client = client_for(farmer)
    put_off = timezone.localdate() + 4 * DAY
    assert move_harvest(client, listing, put_off).status_code == 200
    order = order_route(order_id=placed.pk)
    assert pickup_day(order) >= put_off
    line = order.lines.get()
    assert (line.harvest_round, Listing.objects.get(pk=listing.pk).harvest_round) == (0, 0)

    refused = move_harvest(client, listing, pickup_day(order) + DAY)

    assert (refused.status_code, refused.json()["orders"]) == (
        409,
        [{"order": order.pk, "line": line.pk, "pickup_date": str(pickup_day(order))}],
    )
    assert Listing.objects.get(pk=listing.pk).harvest_date == put_off


def test_a_line_ordered_before_lines_kept_their_harvest_counts_as_this_harvests(client_for):
    farmer = FarmerFactory()
    listing = growing(farmer)
    order, line = routed(listing)
    OrderLine.objects.filter(pk=line.pk).update(harvest_round=None)

    refused = move_harvest(client_for(farmer), listing, pickup_day(order) + DAY)

    assert (refused.status_code, refused.json()["orders"]) == (
        409,
        [{"order": order.pk, "line": line.pk, "pickup_date": str(pickup_day(order))}],
    )


def test_the_harvest_round_counts_harvests_not_moves_of_one(client_for):
    """Put off or brought forward while still ahead, a harvest stays the same one; moved
    later once it is in (today or before), the listing is on to its next one."""
    farmer = FarmerFactory()
    listing = growing(farmer)
    client = client_for(farmer)
    today = timezone.localdate()

    def round_after(**change):
        assert client.patch(f"{LISTINGS}{listing.pk}/", change, format="json").status_code == 200
        return Listing.objects.get(pk=listing.pk).harvest_round

    assert round_after(harvest_date=str(today + 5 * DAY)) == 0  # put off, still ahead
    assert round_after(harvest_date=str(today + 3 * DAY)) == 0  # brought forward
    assert round_after(harvest_date=str(today)) == 0  # brought in today
    assert round_after(price="9.00") == 0  # the date not sent
    assert round_after(harvest_date=str(today)) == 0  # the same date sent again
    assert round_after(harvest_date=str(today - DAY)) == 0  # in, a day earlier than said
    assert round_after(harvest_date=str(today + 7 * DAY)) == 1  # in: on to the next
    assert round_after(harvest_date=str(today + 9 * DAY)) == 1  # that one put off
