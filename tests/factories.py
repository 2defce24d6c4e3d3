"""factory_boy factories for the whole suite."""

from datetime import timedelta
from decimal import Decimal

import factory
from django.utils import timezone

from listings.models import Category, Listing
from listings.services import listing_create
from logistics.models import ServiceCenter, Village
from marketplace.accounts.models import Role, User
from orders.models import Order
from orders.payments import PaymentNotice, payment_record
from orders.services import LineRequest, order_place

PASSWORD = "correct-horse-battery"


class ServiceCenterFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ServiceCenter

    name = factory.Sequence(lambda n: f"Center {n}")
    county = "Qingshan"
    lat = Decimal("30.250000")
    lng = Decimal("119.700000")


class VillageFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Village

    name = factory.Sequence(lambda n: f"Village {n}")
    county = "Qingshan"
    lat = Decimal("30.260000")
    lng = Decimal("119.710000")
    service_center = factory.SubFactory(ServiceCenterFactory)


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User

    phone = factory.Sequence(lambda n: f"+86138{n:08d}")
    name = factory.Faker("name", locale="zh_CN")
    role = Role.BUYER
    village = factory.SubFactory(VillageFactory)
    buyer_kind = factory.LazyAttribute(lambda u: "household" if u.role == Role.BUYER else "")
    password = factory.django.Password(PASSWORD)


class FarmerFactory(UserFactory):
    role = Role.FARMER


class BuyerFactory(UserFactory):
    role = Role.BUYER


class StaffFactory(UserFactory):
    role = Role.STAFF
    village = None
    service_center = factory.SubFactory(ServiceCenterFactory)


def create_listing(farmer=None, *, category="vegetables", **overrides):
    """A listing made the way the API makes it (search vector included)."""
    fields = {
        "title": "西红柿",
        "unit": "jin",
        "price": Decimal("3.50"),
        "quantity_available": Decimal("100"),
        "harvest_date": timezone.localdate() - timedelta(days=1),
        "shelf_life_days": 7,
        **overrides,
    }
    return listing_create(
        farmer=farmer or FarmerFactory(), category=Category.objects.get(slug=category), **fields
    )


def place_order(
    buyer: User,
    *lines: Listing | tuple[Listing, Decimal | int | str],
    delivery_method: str = "home",
    payment_method: str = "cod",
    note: str = "",
) -> Order:
    """An order placed through the service, as the API places it. A line is a listing (one
    of it) or a (listing, quantity) pair; delivered home, cash on delivery unless told."""
    requests = []
    for line in lines:
        listing, quantity = line if isinstance(line, tuple) else (line, 1)
        requests.append(LineRequest(listing_id=listing.pk, quantity=Decimal(quantity)))
    return order_place(
        buyer=buyer,
        lines=requests,
        delivery_method=delivery_method,
        payment_method=payment_method,
        note=note,
    )


def provider_notice(
    order: Order,
    amount: Decimal | str,
    *,
    kind: str = "payment.succeeded",
    event_id: str = "evt_1",
    currency: str = "CNY",
) -> Order:
    """The payment provider's verified notice about `order`, recorded as the webhook
    records it (orders.payments.payment_record)."""
    notice = PaymentNotice(
        provider="sandbox",
        event_id=event_id,
        kind=kind,
        order_id=order.pk,
        amount=Decimal(amount),
        currency=currency,
        payload={"id": event_id},
    )
    return payment_record(notice=notice)
