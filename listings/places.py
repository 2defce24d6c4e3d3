"""Where a listing is, for buyers, and where its produce is picked up, for logistics."""

from decimal import Decimal
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from logistics.models import Village
    from marketplace.accounts.models import User


def pickup_point(farmer: "User", village: "Village") -> tuple[Decimal, Decimal]:
    """Where a farmer's produce is collected: the farmer's exact place when they gave one,
    else the point of `village` (the listing's, which is the farmer's). Not for public
    answers."""
    if farmer.lat is not None and farmer.lng is not None:
        return farmer.lat, farmer.lng
    return village.lat, village.lng
