"""A farm's exact place is not public: search distance, the near/radius filter and the
distance order work from the listing's public point, the farm rounded to a 0.01° grid
(listings.places); the listings table cannot hold a finer point, and the migration rounded
the rows that did."""

import json
import math
from decimal import Decimal

import pytest
from django.db import IntegrityError, connection, transaction
from django.db.migrations.executor import MigrationExecutor

from listings.models import Listing
from tests.factories import FarmerFactory, VillageFactory, create_listing

pytestmark = pytest.mark.django_db

LISTINGS = "/api/v1/listings/"
KM_PER_DEGREE = 111.195
# A farm 0.62 km from its grid point (30.23, 119.66): 0.0044° north of it, 0.0039° west.
FARM = (Decimal("30.234400"), Decimal("119.656100"))
GRID_POINT = (30.23, 119.66)
# Another farm in the same cell, 0.8 km from the first.
NEIGHBOUR = (Decimal("30.226500"), Decimal("119.664200"))


def haversine_km(lat1, lng1, lat2, lng2) -> float:
    p1, p2 = math.radians(float(lat1)), math.radians(float(lat2))
    dp, dl = p2 - p1, math.radians(float(lng2) - float(lng1))
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6371.0088 * math.asin(math.sqrt(a))


def search(api, lat: float, lng: float, **params) -> list[dict]:
    response = api.get(LISTINGS, {"near": f"{lat},{lng}", "radius_km": "20", **params})
    assert response.status_code == 200, response.json()
    return response.json()["results"]


def trilaterate(readings: list[tuple[float, float, float]]) -> tuple[float, float]:
    """The point at distances d from three (lat, lng, d) readings: circles on a plane
    tangent at the first point (exact to metres over a few km), their pairwise differences
    solved as two linear equations."""
    lat0, lng0 = readings[0][0], readings[0][1]
    squeeze = math.cos(math.radians(lat0))

    def plane(lat: float, lng: float) -> tuple[float, float]:
        return (lng - lng0) * KM_PER_DEGREE * squeeze, (lat - lat0) * KM_PER_DEGREE

    (x1, y1), d1 = plane(*readings[0][:2]), readings[0][2]
    rows = []
    for lat, lng, d in readings[1:]:
        x, y = plane(lat, lng)
        rows.append((2 * (x - x1), 2 * (y - y1), d1**2 - d**2 + x**2 - x1**2 + y**2 - y1**2))
    (a, b, e), (c, d, f) = rows
    det = a * d - b * c
    x, y = (e * d - b * f) / det, (a * f - e * c) / det
    return lat0 + y / KM_PER_DEGREE, lng0 + x / (KM_PER_DEGREE * squeeze)


# Three buyers' points 3 to 5 km around the farm, in three directions.
STATIONS = [(30.19, 119.65), (30.26, 119.70), (30.27, 119.61)]


def test_three_searches_find_the_grid_point_not_the_farm(api, client_for):
    farmer = FarmerFactory(lat=FARM[0], lng=FARM[1])
    listing = create_listing(farmer)

    def readings() -> list[tuple[float, float, float]]:
        answers = [search(api, lat, lng) for lat, lng in STATIONS]
        assert [[row["id"] for row in rows] for rows in answers] == [[listing.pk]] * 3
        return [
            (*station, rows[0]["distance_km"])
            for station, rows in zip(STATIONS, answers, strict=True)
        ]

    heard = readings()
    guess = trilaterate(heard)
    # What three searches give away is the grid point (to the answers' 0.1 km)…
    assert haversine_km(*guess, *GRID_POINT) < 0.15
    # …which is 0.62 km from the farm: located no better than the grid's ~1 km cell.
    assert haversine_km(*guess, *FARM) > 0.45
    assert haversine_km(*GRID_POINT, *FARM) == pytest.approx(0.616, abs=0.005)

    # Any farm in the cell answers the very same: nothing in the answers tells them apart.
    moved = client_for(farmer).patch(
        "/api/v1/me/", {"lat": str(NEIGHBOUR[0]), "lng": str(NEIGHBOUR[1])}, format="json"
    )
    assert moved.status_code == 200, moved.json()
    assert haversine_km(*FARM, *NEIGHBOUR) > 0.8
    assert readings() == heard


def test_distance_order_and_radius_work_on_the_public_points(api):
    """Seen from (30.2, 119.6): farm A is 2.89 km north and farm B 3.27 km west, but their
    grid points are 3.34 km and 2.88 km away: B comes first, and within 3 km only B."""
    here = (30.2, 119.6)
    north = create_listing(FarmerFactory(lat=Decimal("30.226000"), lng=Decimal("119.600000")))
    west = create_listing(FarmerFactory(lat=Decimal("30.200000"), lng=Decimal("119.566000")))
    public = {north.pk: (30.23, 119.60), west.pk: (30.20, 119.57)}
    assert haversine_km(*here, 30.226, 119.6) < 3 < haversine_km(*here, 30.2, 119.566)

    rows = search(api, *here, ordering="distance", radius_km="10")
    assert [row["id"] for row in rows] == [west.pk, north.pk]
    for row in rows:
        expected = round(haversine_km(*here, *public[row["id"]]), 1)
        assert row["distance_km"] == pytest.approx(expected, abs=1e-9)
    assert [row["distance_km"] for row in rows] == [2.9, 3.3]

    assert [row["id"] for row in search(api, *here, radius_km="3")] == [west.pk]
    within = search(api, *here, radius_km="3.4", ordering="distance")
    assert [row["id"] for row in within] == [west.pk, north.pk]


def test_public_answers_hold_no_coordinates_of_the_farm(api):
    farmer = FarmerFactory(lat=FARM[0], lng=FARM[1])
    listing = create_listing(farmer)
    answers = [
        search(api, *STATIONS[0]),
        api.get(f"{LISTINGS}{listing.pk}/").json(),
        api.get(f"/api/v1/farmers/{farmer.pk}/").json(),
    ]
    for answer in answers:
        text = json.dumps(answer)
        assert '"lat"' not in text
        assert '"lng"' not in text
        assert "30.2344" not in text
        assert "119.6561" not in text


def test_the_listings_table_holds_only_grid_points():
    farmer = FarmerFactory(lat=FARM[0], lng=FARM[1])
    listing = create_listing(farmer)
    assert (listing.lat, listing.lng) == (Decimal("30.23"), Decimal("119.66"))
    assert Listing.objects.filter(pk=listing.pk).values_list("lat", "lng").get() == (
        Decimal("30.230000"),
        Decimal("119.660000"),
    )
    # The place of a farmer without an exact one, their village's point, is rounded too.
    village = VillageFactory(lat=Decimal("30.263300"), lng=Decimal("119.715500"))
    in_village = create_listing(FarmerFactory(village=village))
    assert (in_village.lat, in_village.lng) == (Decimal("30.26"), Decimal("119.72"))
    # Whatever path writes it, the database refuses a finer point.
    with pytest.raises(IntegrityError), transaction.atomic():
        Listing.objects.filter(pk=listing.pk).update(lat=FARM[0], lng=FARM[1])


@pytest.mark.django_db(transaction=True)
def test_the_migration_rounds_the_places_listings_copied_and_can_restore_them():
    on_farm = create_listing(FarmerFactory(lat=FARM[0], lng=FARM[1]))
    village = VillageFactory(lat=Decimal("30.263300"), lng=Decimal("119.715500"))
    in_village = create_listing(FarmerFactory(village=village))

    def places() -> dict[int, tuple[Decimal, Decimal]]:
        return {pk: (lat, lng) for pk, lat, lng in Listing.objects.values_list("pk", "lat", "lng")}

    executor = MigrationExecutor(connection)
    executor.migrate([("listings", "0003_listingphoto_thumbnail_failed_at")])
    try:
        # Before: each listing held its farmer's exact place, else its village's point.
        assert places() == {
            on_farm.pk: FARM,
            in_village.pk: (Decimal("30.263300"), Decimal("119.715500")),
        }
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())
    assert places() == {
        on_farm.pk: (Decimal("30.230000"), Decimal("119.660000")),
        in_village.pk: (Decimal("30.260000"), Decimal("119.720000")),
    }
