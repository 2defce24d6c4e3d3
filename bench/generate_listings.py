"""Load the search benchmark's data set into a `*_bench` database, in well under 2 minutes.

    .venv/bin/python bench/generate_listings.py            # 100,000 listings (the default)
    .venv/bin/python bench/generate_listings.py --listings 20000 --seed 7

100 service centers, 2,000 villages in 10 counties (a disc of 80 km around the demo
county's middle, 30.2 N 119.6 E), 10,000 farmers (half with an exact farm place 0.2–1.2 km
from their village), 100,000 active listings, and cover photos for ~70 % of the listings.
The `_bench` database is emptied first (TRUNCATE … RESTART IDENTITY CASCADE of these tables;
the seeded categories stay) and the script refuses any database whose name does not end in
`_bench`. Rows go in by COPY; the search vector is built in one INSERT … SELECT with
exactly the expression that listings.services.search_vector_for builds (checked on a sample
at the end), then ANALYZE.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import sys
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from psycopg.types.json import Jsonb

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")

import django

django.setup()

from django.contrib.auth.hashers import make_password  # noqa: E402
from django.db import connection, models  # noqa: E402
from django.db.models import NOT_PROVIDED  # noqa: E402
from django.utils import timezone  # noqa: E402

from bench import vocabulary as vocab  # noqa: E402
from listings.models import Category, Listing, ListingPhoto  # noqa: E402
from listings.places import coarse  # noqa: E402
from listings.search import segment  # noqa: E402
from listings.services import search_vector_for  # noqa: E402
from logistics.models import ServiceCenter, Village  # noqa: E402
from marketplace.accounts.models import User  # noqa: E402

MIDDLE = (30.2, 119.6)
REGION_RADIUS_KM = 80.0
EARTH_RADIUS_KM = 6371.0
KM_PER_DEGREE = EARTH_RADIUS_KM * math.pi / 180
PASSWORD = "bench-farmer-pass"  # noqa: S105 - bench data only
TABLES = (
    "listings_listingphoto",
    "listings_listing",
    "accounts_user",
    "logistics_village",
    "logistics_servicecenter",
)


def point_near(rng: random.Random, lat: float, lng: float, km: float) -> tuple[float, float]:
    bearing = rng.random() * math.tau
    dlat = km * math.cos(bearing) / KM_PER_DEGREE
    dlng = km * math.sin(bearing) / (KM_PER_DEGREE * math.cos(math.radians(lat)))
    return lat + dlat, lng + dlng


def point_in_disc(rng: random.Random, lat: float, lng: float, radius_km: float):
    return point_near(rng, lat, lng, radius_km * math.sqrt(rng.random()))


def km_between(a: tuple[float, float], b: tuple[float, float]) -> float:
    dlat = (a[0] - b[0]) * KM_PER_DEGREE
    dlng = (a[1] - b[1]) * KM_PER_DEGREE * math.cos(math.radians(a[0]))
    return math.hypot(dlat, dlng)


def missing_defaults(model, columns: tuple[str, ...]) -> dict[str, object]:
    """Columns of the model's table that `columns` leaves out and that are NOT NULL with no
    default in the database, each with the model field's default: the schema grows as the
    app does, and the loader keeps working."""
    extra: dict[str, object] = {}
    for field in model._meta.concrete_fields:
        if field.column in columns or field.null or field.primary_key:
            continue
        if getattr(field, "db_default", NOT_PROVIDED) is not NOT_PROVIDED:
            continue
        if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
            value = timezone.now()
        elif field.has_default():
            value = field.get_default()
        elif field.blank and isinstance(field, (models.CharField, models.TextField)):
            value = ""
        else:
            raise SystemExit(
                f"{model._meta.db_table}.{field.column} is NOT NULL with no default: "
                "give it a value in bench/generate_listings.py"
            )
        extra[field.column] = Jsonb(value) if isinstance(value, (dict, list)) else value
    return extra


def copy_rows(cursor, table: str, columns: tuple[str, ...], rows, *, model=None) -> int:
    """COPY rows (tuples; None is NULL) into table in one statement; with `model`, the
    columns the rows leave out get the model's defaults."""
    extra = missing_defaults(model, columns) if model is not None else {}
    columns = columns + tuple(extra)
    tail = tuple(extra.values())
    count = 0
    with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row + tail)
            count += 1
    return count


class Generator:
    def __init__(self, *, seed: int, listings: int, farmers: int, villages: int, centers: int):
        self.rng = random.Random(seed)
        self.n_listings, self.n_farmers = listings, farmers
        self.n_villages, self.n_centers = villages, centers
        self.now = timezone.now()
        self.today = timezone.localdate()

    # --- geography -----------------------------------------------------------------------
    def centers_and_villages(self):
        rng = self.rng
        seats = [point_in_disc(rng, *MIDDLE, REGION_RADIUS_KM * 0.8) for _ in vocab.COUNTIES]
        seats[0] = MIDDLE  # 青山县 keeps the demo county's middle
        centers = []  # (id, name, county, address, lat, lng)
        per_county = self.n_centers // len(vocab.COUNTIES)
        for c, county in enumerate(vocab.COUNTIES):
            towns = rng.sample(vocab.TOWN_WORDS, per_county)
            for town in towns:
                lat, lng = point_in_disc(rng, *seats[c], 25.0)
                name = f"{county}{town}镇服务中心"
                address = f"{county}{town}镇人民路{rng.randint(1, 99)}号"
                centers.append((len(centers) + 1, name, county, address, lat, lng))
        villages = []  # (id, name, county, lat, lng, center_id)
        taken: set[tuple[str, str]] = set()
        while len(villages) < self.n_villages:
            place = point_in_disc(rng, *MIDDLE, REGION_RADIUS_KM)
            center = min(centers, key=lambda row: km_between(place, (row[4], row[5])))
            county = center[2]
            name = rng.choice(vocab.VILLAGE_STEMS) + rng.choice(vocab.VILLAGE_SUFFIXES)
            if (county, name) in taken:
                continue
            taken.add((county, name))
            villages.append((len(villages) + 1, name, county, place[0], place[1], center[0]))
        return centers, villages

    # --- people --------------------------------------------------------------------------
    def farmers(self, villages):
        rng = self.rng
        rows = []  # (id, name, village_id, lat, lng, address)
        for n in range(1, self.n_farmers + 1):
            village = (
                villages[(n - 1) % len(villages)] if n <= len(villages) else rng.choice(villages)
            )
            home = village[1][:1] if village[1][:1] in vocab.SURNAMES else ""
            surname = home if home and rng.random() < 0.6 else rng.choice(vocab.SURNAMES)
            name = surname + rng.choice(vocab.GIVEN_NAMES)
            if n % 2:
                lat, lng = point_near(rng, village[3], village[4], rng.uniform(0.2, 1.2))
                address = f"{village[2]}{village[1]}{rng.randint(1, 8)}组{rng.randint(1, 60)}号"
            else:
                lat = lng = None
                address = ""
            rows.append((n, name, village[0], lat, lng, address))
        return rows

    # --- listings ------------------------------------------------------------------------
    def listings(self, categories, farmers, villages):
        """Yield (listing row, photo rows); each listing row ends with the 4 segmented texts."""
        rng = self.rng
        village_by_id = {v[0]: v for v in villages}
        slugs = list(vocab.CATEGORY_PROFILE)
        shares = [vocab.CATEGORY_PROFILE[s][0] for s in slugs]
        # Some farmers list a lot, most a few: log-normal weights.
        weights = [rng.lognormvariate(0, 0.9) for _ in farmers]
        owners = rng.choices(farmers, weights=weights, k=self.n_listings)
        category_text = {
            slug: segment(f"{cat.name} {cat.name_zh} {cat.slug}")
            for slug, cat in categories.items()
        }
        names_text: dict[int, str] = {}
        product_names = [p[0] for products in vocab.PRODUCTS.values() for p in products]
        for listing_id, farmer in enumerate(owners, start=1):
            farmer_id, farmer_name, village_id, f_lat, f_lng, _ = farmer
            village = village_by_id[village_id]
            slug = rng.choices(slugs, weights=shares)[0]
            _, units, shelf_range, cold = vocab.CATEGORY_PROFILE[slug]
            zh, en, low, high = rng.choice(vocab.PRODUCTS[slug])
            unit, w_low, w_high = rng.choice(units)
            weight = (
                Decimal(f"{rng.uniform(w_low, w_high):.3f}")
                if w_low != w_high
                else Decimal(str(w_low))
            )
            if unit == "kg":
                weight = Decimal("1.000")
            elif unit == "jin":
                weight = Decimal("0.500")
            per_kg = rng.uniform(low, high)
            price = max(Decimal("0.01"), Decimal(f"{per_kg * float(weight):.2f}"))
            title = self.title(zh, en, village[1])
            description = self.description(zh, en, village[1], product_names)
            created = self.now - timedelta(seconds=rng.uniform(0, 45 * 86400))
            updated = created + (self.now - created) * rng.random() * rng.random()
            harvest = created.astimezone(timezone.get_current_timezone()).date() + timedelta(
                days=rng.randint(-5, 3)
            )
            shelf = rng.randint(*shelf_range)
            until = self.available_until(harvest, shelf)
            whole = unit in ("piece", "dozen", "box", "crate", "bag", "bunch")
            quantity = (
                Decimal(rng.randint(2, 300)) if whole else Decimal(f"{rng.uniform(5, 2000):.1f}")
            )
            min_order = Decimal(rng.choice((1, 1, 1, 2, 5, 10)))
            lat, lng = (f_lat, f_lng) if f_lat is not None else (village[3], village[4])
            # The listing's public point, as listings.services stores it (listings.places).
            lat, lng = coarse(Decimal(coordinate(lat))), coarse(Decimal(coordinate(lng)))
            if farmer_id not in names_text:
                names_text[farmer_id] = segment(f"{farmer_name} {village[1]}")
            row = (
                listing_id,
                title,
                description,
                unit,
                weight,
                price,
                quantity,
                min_order,
                harvest,
                until,
                shelf,
                rng.random() < 0.15,  # is_organic
                (cold and rng.random() < 0.85) or rng.random() < 0.03,
                "active",
                f"{lat:.6f}",
                f"{lng:.6f}",
                created,
                updated,
                categories[slug].pk,
                farmer_id,
                village_id,
                segment(title),
                category_text[slug],
                names_text[farmer_id],
                segment(description),
            )
            photos = []
            if rng.random() < 0.7:
                for n in range(1, rng.choice((1, 1, 2, 3)) + 1):
                    # Now and then the thumbnail is not made yet (the cover subquery skips it).
                    thumb = "" if rng.random() < 0.05 else f"listings/{listing_id}/thumb_{n}.jpg"
                    photos.append(
                        (listing_id, f"listings/{listing_id}/photo_{n}.jpg", thumb, created)
                    )
            yield row, photos

    def title(self, zh: str, en: str, village_name: str) -> str:
        rng = self.rng
        prefix = rng.choice(vocab.TITLE_PREFIXES)
        style = rng.random()
        if style < 0.45:
            return f"{prefix}{zh}"
        if style < 0.75:
            return f"{prefix}{zh} {rng.choice(vocab.EN_ADJECTIVES)} {en}"
        if style < 0.9:
            return f"{village_name}{prefix}{zh}"
        return f"{prefix}{zh}，{rng.choice(vocab.FEATURES)}"

    def description(self, zh: str, en: str, village_name: str, others: list[str]) -> str:
        rng = self.rng
        sentences = rng.sample(vocab.DESCRIPTION_SENTENCES, rng.randint(2, 5))
        text = "".join(
            s.format(
                p=zh,
                feature=rng.choice(vocab.FEATURES),
                storage=rng.choice(vocab.STORAGE),
                village=village_name,
                other=rng.choice(others),
            )
            for s in sentences
        )
        if rng.random() < 0.3:
            text += " " + rng.choice(vocab.EN_SENTENCES).format(en=en)
        return text

    def available_until(self, harvest: date, shelf: int) -> date | None:
        rng = self.rng
        if rng.random() < 0.45:
            return None
        # Mostly still on offer; ~3 % ended a day or two ago (still active until the owner
        # or a job notices), which public search filters out.
        until = self.today + timedelta(days=rng.randint(-2, 30))
        if until < harvest:
            until = harvest + timedelta(days=min(shelf, 30))
        return until


LISTING_COLUMNS = (
    "id",
    "title",
    "description",
    "unit",
    "unit_weight_kg",
    "price",
    "quantity_available",
    "min_order_quantity",
    "harvest_date",
    "available_until",
    "shelf_life_days",
    "is_organic",
    "needs_refrigeration",
    "status",
    "lat",
    "lng",
    "created_at",
    "updated_at",
    "category_id",
    "farmer_id",
    "village_id",
)
SEGMENT_COLUMNS = ("title_seg", "category_seg", "names_seg", "description_seg")


def search_vector_sql(alias: str) -> str:
    """search_vector_for's expression over the segmented columns of `alias`."""
    parts = zip(SEGMENT_COLUMNS, "ABCD", strict=True)
    return " || ".join(
        f"setweight(to_tsvector('simple'::regconfig, COALESCE({alias}.{column}, '')), '{weight}')"
        for column, weight in parts
    )


def secondary_indexes(cursor) -> list[tuple[str, str]]:
    """(name, CREATE INDEX statement) of listings_listing's indexes other than constraints'."""
    cursor.execute(
        """
        SELECT i.relname, pg_get_indexdef(x.indexrelid)
        FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
        WHERE x.indrelid = 'listings_listing'::regclass
          AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid)
        ORDER BY i.relname
        """
    )
    return cursor.fetchall()


def verify_sample(sample_size: int, rng: random.Random) -> int:
    """Recompute search_vector_for through the ORM for some listings; return mismatches."""
    ids = rng.sample(range(1, Listing.objects.count() + 1), sample_size)
    bad = 0
    for listing in Listing.objects.filter(pk__in=ids).select_related("category", "farmer__village"):
        expected = (
            Listing.objects.filter(pk=listing.pk)
            .annotate(
                expected=search_vector_for(
                    title=listing.title,
                    description=listing.description,
                    category=listing.category,
                    farmer=listing.farmer,
                )
            )
            .values_list("search_vector", "expected")
            .get()
        )
        bad += expected[0] != expected[1]
    return bad


CENTER_COLUMNS = ("id", "name", "county", "address", "lat", "lng", "opens_at", "closes_at",
                  "average_speed_kmh", "detour_factor")  # fmt: skip
USER_COLUMNS = ("id", "password", "is_superuser", "phone", "name", "role", "address", "lat",
                "lng", "buyer_kind", "is_active", "is_staff", "date_joined",
                "village_id")  # fmt: skip
PHOTO_COLUMNS = ("listing_id", "image", "thumbnail", "width", "height", "created_at")


def coordinate(value: float | None) -> str | None:
    return None if value is None else f"{value:.6f}"


def load_places_and_people(cur, gen: Generator, password: str):
    centers, villages = gen.centers_and_villages()
    copy_rows(
        cur,
        "logistics_servicecenter",
        CENTER_COLUMNS,
        (
            (i, n, county, addr, coordinate(lat), coordinate(lng), "07:00", "19:00", "35.0", "1.35")
            for i, n, county, addr, lat, lng in centers
        ),
        model=ServiceCenter,
    )
    copy_rows(
        cur,
        "logistics_village",
        ("id", "name", "county", "lat", "lng", "service_center_id"),
        (
            (i, n, county, coordinate(lat), coordinate(lng), c)
            for i, n, county, lat, lng, c in villages
        ),
        model=Village,
    )
    farmers = gen.farmers(villages)
    joined = gen.now - timedelta(days=400)
    copy_rows(
        cur,
        "accounts_user",
        USER_COLUMNS,
        (
            (i, password, False, f"+86138{i:08d}", n, "farmer", address, coordinate(lat),
             coordinate(lng), "", True, False, joined, v)
            for i, n, v, lat, lng, address in farmers
        ),
        model=User,
    )  # fmt: skip
    return centers, villages, farmers


def load_listings(cur, gen: Generator, categories, farmers, villages, *, mark) -> list[tuple]:
    """COPY the listings with their segmented texts into a temporary table, then one
    INSERT … SELECT builds every search_vector in PostgreSQL. Returns the photo rows."""
    cur.execute(
        "CREATE TEMP TABLE bench_listing_load (LIKE listings_listing INCLUDING DEFAULTS) "
        "ON COMMIT DROP"
    )
    cur.execute(
        "ALTER TABLE bench_listing_load DROP COLUMN search_vector, "
        + ", ".join(f"ADD COLUMN {c} text" for c in SEGMENT_COLUMNS)
    )
    photos: list[tuple] = []

    def listing_rows():
        for row, listing_photos in gen.listings(categories, farmers, villages):
            photos.extend(listing_photos)
            yield row

    extra = missing_defaults(Listing, (*LISTING_COLUMNS, "search_vector"))
    tail = tuple(extra.values())
    n = copy_rows(
        cur,
        "bench_listing_load",
        LISTING_COLUMNS + SEGMENT_COLUMNS + tuple(extra),
        (row + tail for row in listing_rows()),
    )
    mark(f"{n:,} listings generated, segmented and copied")
    columns = ", ".join((*LISTING_COLUMNS, *extra))
    cur.execute(
        f"INSERT INTO listings_listing ({columns}, search_vector) "
        f"SELECT {columns}, {search_vector_sql('t')} FROM bench_listing_load t"
    )
    mark("listings inserted with search_vector")
    copy_rows(
        cur,
        "listings_listingphoto",
        PHOTO_COLUMNS,
        ((lid, image, thumb, 1600, 1200, created) for lid, image, thumb, created in photos),
        model=ListingPhoto,
    )
    mark(f"{len(photos):,} photos copied")
    return photos


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--listings", type=int, default=100_000)
    parser.add_argument("--farmers", type=int, default=10_000)
    parser.add_argument("--villages", type=int, default=2_000)
    parser.add_argument("--centers", type=int, default=100)
    parser.add_argument("--seed", type=int, default=20260101)
    parser.add_argument("--verify", type=int, default=200, help="listings to re-check")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    name = connection.settings_dict["NAME"]
    if not name.endswith("_bench"):
        sys.exit(f"refusing to load benchmark data into {name!r}: the name must end in _bench")
    categories = {c.slug: c for c in Category.objects.all()}
    missing = set(vocab.CATEGORY_PROFILE) - set(categories)
    if missing:
        sys.exit(f"categories missing (migrate first): {sorted(missing)}")
    print(
        f"loading {name}: {args.listings:,} listings, {args.farmers:,} farmers, "
        f"{args.villages:,} villages, {args.centers} service centers"
    )
    started = time.perf_counter()

    def mark(step: str) -> None:
        print(f"  {time.perf_counter() - started:6.1f} s  {step}", flush=True)

    gen = Generator(
        seed=args.seed,
        listings=args.listings,
        farmers=args.farmers,
        villages=args.villages,
        centers=args.centers,
    )
    password = make_password(PASSWORD)  # one hash shared by every bench farmer
    connection.ensure_connection()
    raw = connection.connection  # the psycopg connection, for COPY
    with raw.transaction(), raw.cursor() as cur:
        cur.execute(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE")
        indexes = secondary_indexes(cur)
        for index_name, _ in indexes:
            cur.execute(f'DROP INDEX "{index_name}"')
        mark("truncated; listing indexes dropped (rebuilt after the load)")
        centers, villages, farmers = load_places_and_people(cur, gen, password)
        mark(f"{len(centers)} centers, {len(villages):,} villages, {len(farmers):,} farmers")
        photos = load_listings(cur, gen, categories, farmers, villages, mark=mark)
        for table in TABLES:
            cur.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                f"(SELECT coalesce(max(id), 0) + 1 FROM {table}), false)"
            )
        cur.execute("SET CONSTRAINTS ALL IMMEDIATE")  # check the deferred foreign keys now
        mark("foreign keys checked")
        cur.execute("SET LOCAL maintenance_work_mem = '256MB'")
        for _, definition in indexes:
            cur.execute(definition)
        mark(f"{len(indexes)} indexes rebuilt")
    raw.autocommit = True
    with raw.cursor() as cur:
        cur.execute("VACUUM (ANALYZE) " + ", ".join(TABLES))
    mark("VACUUM ANALYZE")
    total = time.perf_counter() - started

    bad = verify_sample(min(args.verify, args.listings), random.Random(args.seed))
    print(
        f"search_vector check: {args.verify} sampled listings, {bad} differ from "
        "listings.services.search_vector_for"
    )
    counts = {
        "service centers": len(centers),
        "villages": len(villages),
        "farmers": User.objects.filter(role="farmer").count(),
        "listings": Listing.objects.filter(status="active").count(),
        "photos": len(photos),
    }
    print(", ".join(f"{v:,} {k}" for k, v in counts.items()))
    print(f"loaded in {total:.1f} s (limit 120 s) at {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    if bad:
        sys.exit(1)


if __name__ == "__main__":
    main()
