"""Cash on delivery: what the buyer of a cash-on-delivery order pays at each hand-over.

An order of several farmers comes in one shipment per farmer, perhaps at different stops
and days, and some may never come. Each time shipments are handed to the buyer, the cash
due is their goods (their farmers' lines still standing) plus the delivery fee owed for
everything handed over so far, them included (the order's fee rule applied to those goods
and farmers, never above the order's fee), less the fee collected at earlier hand-overs.
So the cash of all the hand-overs adds up to the order's total as it ends (delivered, or
partially delivered once the rest failed for good: orders.services._total_again gives the
lines left, which are then the lines handed over, the fee their hand-overs took, from
`cash_taken`, though the fee settings changed since). A prepaid order has nothing to
collect.

The rule is `CashLedger`; `with_cash_figures` reads what it needs of an order with each
shipment, in the shipment's own statement. Stop contacts, load lists and the shipment
detail show the ledger's answer; a delivery or a hand-over records it on each shipment
(`Shipment.cash_collected`) in its transaction."""

from dataclasses import dataclass
from decimal import Decimal

from django.db.models import Count, OuterRef, QuerySet, Subquery, Sum, Value
from django.db.models.functions import Coalesce

from logistics.models import Shipment, ShipmentStatus
from orders.models import LineStatus, Order, OrderLine, PaymentMethod
from orders.selectors import MONEY
from orders.services import delivery_fee

NOTHING = Decimal("0.00")


def with_cash_figures(shipments: QuerySet[Shipment]) -> QuerySet[Shipment]:
    """Each shipment with what CashLedger reads of it and its order, as subqueries of the
    shipments' own statement (no query more, however many rows): `cash_goods`, its farmer's
    lines still standing in the order; and of the order's shipments delivered,
    `cash_delivered_goods` (their lines), `cash_delivered_count` and
    `cash_delivered_recorded` (how many have their cash recorded) and
    `cash_delivered_collected` (what was recorded)."""
    standing = OrderLine.objects.filter(order_id=OuterRef("order_id"), status=LineStatus.ACTIVE)
    # Inside `standing`, OuterRef("order_id") is the line's order: the same one.
    delivered = Shipment.objects.filter(
        order_id=OuterRef("order_id"), status=ShipmentStatus.DELIVERED
    )

    def per_order(queryset: QuerySet, aggregate) -> Subquery:
        return Subquery(
            queryset.order_by().values("order_id").annotate(figure=aggregate).values("figure")
        )

    return shipments.annotate(
        cash_goods=Coalesce(
            per_order(standing.filter(farmer_id=OuterRef("farmer_id")), Sum("subtotal")),
            Value(NOTHING),
            output_field=MONEY,
        ),
        cash_delivered_goods=Coalesce(
            per_order(
                standing.filter(farmer_id__in=delivered.values("farmer_id")), Sum("subtotal")
            ),
            Value(NOTHING),
            output_field=MONEY,
        ),
        cash_delivered_count=Coalesce(per_order(delivered, Count("id")), 0),
        cash_delivered_recorded=Coalesce(per_order(delivered, Count("cash_collected")), 0),
        cash_delivered_collected=Coalesce(
            per_order(delivered, Sum("cash_collected")), Value(NOTHING), output_field=MONEY
        ),
    )


def cash_taken(order: Order) -> tuple[Decimal, Decimal] | None:
    """What the hand-overs of a cash-on-delivery order took so far, as CashLedger counts it:
    the goods handed over (their lines still standing) and the part of the delivery fee
    taken with them. None when prepaid, when nothing was handed over yet, or when a
    delivery recorded before cash was has none recorded (the ledger then reads its fee by
    the rule as configured now, as the order's total does)."""
    if order.payment_method != PaymentMethod.COD:
        return None
    delivered = Shipment.objects.filter(order_id=order.pk, status=ShipmentStatus.DELIVERED)
    shipment = with_cash_figures(delivered).first()
    if shipment is None or shipment.cash_delivered_recorded != shipment.cash_delivered_count:
        return None
    shipment.order = order
    ledger = CashLedger.of(shipment)
    return ledger.goods, ledger.fee_collected


@dataclass
class CashLedger:
    """One order's hand-overs, one shipment (one farmer's goods) at a time: what has been
    handed over (`goods`, `farmers`) and the part of the delivery fee collected for it."""

    order: Order
    goods: Decimal
    farmers: int
    fee_collected: Decimal

    @classmethod
    def of(cls, shipment: Shipment) -> "CashLedger":
        """The ledger of the shipment's order as it stands, from `with_cash_figures` (and
        the order, loaded with the shipment). A delivery recorded before cash was (its
        `cash_collected` null) counts as having collected the fee the rule owes for what
        was delivered then."""
        ledger = cls(
            order=shipment.order,
            goods=shipment.cash_delivered_goods,
            farmers=shipment.cash_delivered_count,
            fee_collected=NOTHING,
        )
        if shipment.cash_delivered_recorded == shipment.cash_delivered_count:
            ledger.fee_collected = shipment.cash_delivered_collected - ledger.goods
        else:
            ledger.fee_collected = ledger.fee_owed()
        return ledger

    def fee_owed(self) -> Decimal:
        """The delivery fee for the goods handed over so far: the order's fee rule for
        them, never above the order's fee (the one quoted, or lower once lines were turned
        down or not delivered: never higher than what the buyer was told)."""
        if not self.farmers:
            return NOTHING
        if self.goods >= self.order.subtotal:
            # All its goods still standing: the fee the order says (the rule as configured
            # now may differ from the one it was quoted by; its total must be collected).
            return self.order.delivery_fee
        fee = delivery_fee(
            delivery_method=self.order.delivery_method,
            subtotal=self.goods,
            farmer_count=self.farmers,
        )
        return min(fee, self.order.delivery_fee)

    def hand_over(self, goods: Decimal) -> Decimal:
        """The cash due for one more shipment handed to the buyer, whose farmer's lines
        still standing come to `goods`: those goods plus the fee now owed for everything
        handed over, less the fee collected before. The ledger then counts it handed over.
        Nothing for a prepaid order."""
        if self.order.payment_method != PaymentMethod.COD:
            return NOTHING
        self.goods += goods
        self.farmers += 1
        fee = self.fee_owed()
        due = goods + fee - self.fee_collected
        self.fee_collected = fee
        return due
