"""Where a listing is, for buyers, and where its produce is picked up, for logistics.

A farmer's exact place (the lat/lng of their profile) is for them, staff and the logistics
that collects from it: a shipment copies it when an order is routed (pickup_point). Anything
public (the search's distance, its near/radius filter and its distance order) works from the
listing's own lat/lng, which hold the farm's place rounded to a grid of 0.01° (public_point):
1.11 km north to south, 0.96 km east to west at 30°N, so the point answered is at most
~0.75 km from the farm (half the diagonal of a cell; ~0.8 km at the equator), and three
searches from chosen points (or a radius narrowed step by step) find the grid point, not the
farm. A fixed grid, not random noise: noise drawn anew for each listing or request averages
out over a farmer's listings or over repeated searches, while every listing of a farm has the
same grid point, and asking again tells nothing more.

The grid is a CHECK constraint of the listings table (listing_place_on_grid): no exact point
can be stored there, whichever path writes it.
"""

from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from logistics.models import Village
    from marketplace.accounts.models import User

GRID_DECIMALS = 2  # 0.01°: the constraint rounds to this many decimals too
GRID = Decimal(1).scaleb(-GRID_DECIMALS)


def coarse(degrees: Decimal) -> Decimal:
    """A latitude or longitude on the public grid (halves away from zero, as SQL round())."""
    return Decimal(degrees).quantize(GRID, rounding=ROUND_HALF_UP)


def pickup_point(farmer: "User", village: "Village") -> tuple[Decimal, Decimal]:
    """Where a farmer's produce is collected: the farmer's exact place when they gave one,
    else the point of `village` (the listing's, which is the farmer's). Not for public
    answers."""
    if farmer.lat is not None and farmer.lng is not None:
        return farmer.lat, farmer.lng
    return village.lat, village.lng


def public_point(farmer: "User", village: "Village") -> tuple[Decimal, Decimal]:
    """The place a listing shows buyers and is searched by: its pickup point on the grid."""
    lat, lng = pickup_point(farmer, village)
    return coarse(lat), coarse(lng)
