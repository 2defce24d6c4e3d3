"""The demo county 青山县 (fictional): centers, villages, people and produce to try the API with.

Deterministic and idempotent. Every kind of data has its own generator seeded by its own
name, so adding a kind (vehicles, …) never reshuffles the ones already seeded; rows are
found by natural key (center name, county + village name, phone, farmer + listing title)
and only missing rows are inserted, so a second run changes nothing, not even rows that
were edited since. The farmers' listings come from listings.demo.

Adding a kind of data: write a `seed_<kind>(...) -> Seeded[...]` step and call it from
`seed_demo_county`, in the order its foreign keys need.
"""

import math
import random
from dataclasses import dataclass
from datetime import time
from decimal import Decimal
from typing import Generic, TypeVar

from django.conf import settings
from django.contrib.auth import password_validation
from django.contrib.auth.hashers import make_password
from django.core.management.base import CommandError
from django.db import transaction
from django.utils import timezone

from listings import demo as listings_demo
from listings.models import Listing
from logistics.geo import EARTH_RADIUS_KM, distance_km
from logistics.models import ServiceCenter, Vehicle, Village
from marketplace.accounts.models import BuyerKind, Role, User
from marketplace.accounts.phones import normalize_phone

COUNTY = "青山县"
SEED = "qingshan-demo-v1"
COUNTY_MIDDLE = (30.2, 119.6)
VILLAGE_RADIUS_KM = 22.0  # villages lie within 44 km of each other
VILLAGE_SPACING_KM = 2.0
HOME_DISTANCE_KM = (0.2, 1.2)  # an exact address lies this far from its village's middle

PASSWORDS = {
    Role.FARMER: "demo-farmer-pass",
    Role.BUYER: "demo-buyer-pass",
    Role.STAFF: "demo-staff-pass",
}
PHONE_PREFIXES = {
    Role.FARMER: "+86138000000",
    Role.BUYER: "+86139000000",
    Role.STAFF: "+86137000000",
}
FARMER_COUNT = 60
# Buyers 1 to 4 are one of each kind (the login table shows them); the rest are shuffled.
BUYER_KINDS = {
    BuyerKind.HOUSEHOLD: 22,
    BuyerKind.SHOP: 8,
    BuyerKind.RESTAURANT: 6,
    BuyerKind.CANTEEN: 4,
}
BUYER_COUNT = sum(BUYER_KINDS.values())

T = TypeVar("T")


@dataclass(frozen=True)
class CenterSpec:
    name: str
    address: str
    lat: Decimal
    lng: Decimal
    average_speed_kmh: Decimal
    detour_factor: Decimal


CENTERS = (
    CenterSpec(
        name="青山镇服务中心",
        address="青山县青山镇人民路18号",
        lat=Decimal("30.245312"),
        lng=Decimal("119.689874"),
        average_speed_kmh=Decimal("35.0"),
        detour_factor=Decimal("1.30"),
    ),
    # Hill roads in the west: slower and more winding.
    CenterSpec(
        name="石门镇服务中心",
        address="青山县石门镇石门街56号",
        lat=Decimal("30.244583"),
        lng=Decimal("119.510426"),
        average_speed_kmh=Decimal("30.0"),
        detour_factor=Decimal("1.45"),
    ),
    CenterSpec(
        name="溪口镇服务中心",
        address="青山县溪口镇溪滨路3号",
        lat=Decimal("30.110346"),
        lng=Decimal("119.598712"),
        average_speed_kmh=Decimal("32.0"),
        detour_factor=Decimal("1.40"),
    ),
)
ROLE_COUNTS = {Role.FARMER: FARMER_COUNT, Role.BUYER: BUYER_COUNT, Role.STAFF: len(CENTERS)}

# fmt: off
VILLAGE_NAMES = (
    "李家村", "王庄", "柳树湾", "张家坞", "陈家岭", "石桥村", "枫林村", "竹园村",
    "上塘村", "下洋村", "杨梅岭", "桃源村", "黄泥坎", "大坑村", "溪头村", "新塘村",
    "后山村", "前岙村", "茶园村", "高坪村", "双溪村", "东岭村", "西坞村", "南山村",
    "北坑村", "金竹坪", "白沙村", "青石村", "荷花塘", "马家湾", "周家畈", "赵村",
    "吴家桥", "徐家埠", "孙家山", "何家垄", "罗家坪", "朱家弄", "郑家坞", "梅岭村",
)
# fmt: on
SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林罗高郑梁谢宋唐许韩冯邓曹彭曾肖田董潘袁蔡蒋余叶程汪方"
)
# fmt: off
GIVEN_NAMES = (
    "建国", "秀英", "桂英", "玉兰", "志强", "海燕", "国强", "春花", "德明", "丽娟",
    "永福", "金凤", "红梅", "卫东", "建华", "淑珍", "伟", "芳", "军", "敏",
    "静", "磊", "勇", "艳", "杰", "娟", "涛", "明", "秀兰", "小红",
    "文军", "宝林", "长青", "福生", "根宝", "水生", "雪梅", "彩霞", "松林", "翠花",
)
# fmt: on
BUSINESS_SUFFIXES = {
    BuyerKind.SHOP: ("便民超市", "小卖部", "生鲜店", "果蔬店"),
    BuyerKind.RESTAURANT: ("农家乐", "土菜馆", "饭店", "面馆"),
    BuyerKind.CANTEEN: ("小学食堂", "敬老院食堂", "卫生院食堂", "中学食堂"),
}


@dataclass(frozen=True)
class Seeded(Generic[T]):
    """One step's rows by natural key, and how many of them this run inserted."""

    rows: dict[str, T]
    created: int


def demo_phone(role: str, number: int) -> str:
    return normalize_phone(f"{PHONE_PREFIXES[role]}{number:02d}")


def demo_phones(role: str) -> list[str]:
    return [demo_phone(role, n) for n in range(1, ROLE_COUNTS[role] + 1)]


def _rng(kind: str) -> random.Random:
    return random.Random(f"{SEED}:{kind}")  # noqa: S311 - demo data, not secrets


def _coordinate(value: float) -> Decimal:
    return Decimal(f"{value:.6f}")


def _point_near(rng: random.Random, lat: float, lng: float, km: float) -> tuple[Decimal, Decimal]:
    """A point at `km` from (lat, lng) in a random direction."""
    bearing = rng.random() * math.tau
    km_per_degree = EARTH_RADIUS_KM * math.pi / 180
    dlat = km * math.cos(bearing) / km_per_degree
    dlng = km * math.sin(bearing) / (km_per_degree * math.cos(math.radians(lat)))
    return _coordinate(lat + dlat), _coordinate(lng + dlng)


def nearest_center_name(lat: Decimal, lng: Decimal) -> str:
    return min(CENTERS, key=lambda c: distance_km(lat, lng, c.lat, c.lng)).name


def village_places() -> dict[str, tuple[Decimal, Decimal]]:
    """Village name → coordinates, spread uniformly over a disc, no two closer than 2 km."""
    rng = _rng("villages")
    places: dict[str, tuple[Decimal, Decimal]] = {}
    for name in VILLAGE_NAMES:
        for _attempt in range(1000):
            # sqrt: uniform over the disc's area, not crowded in the middle.
            km = VILLAGE_RADIUS_KM * math.sqrt(rng.random())
            lat, lng = _point_near(rng, *COUNTY_MIDDLE, km)
            if all(distance_km(lat, lng, *p) >= VILLAGE_SPACING_KM for p in places.values()):
                places[name] = (lat, lng)
                break
        else:  # pragma: no cover - the disc has room for far more villages
            raise RuntimeError("no room left for another demo village")
    return places


def seed_service_centers() -> Seeded[ServiceCenter]:
    rows, created = {}, 0
    for spec in CENTERS:
        rows[spec.name], was_created = ServiceCenter.objects.get_or_create(
            name=spec.name,
            defaults={
                "county": COUNTY,
                "address": spec.address,
                "lat": spec.lat,
                "lng": spec.lng,
                "average_speed_kmh": spec.average_speed_kmh,
                "detour_factor": spec.detour_factor,
            },
        )
        created += was_created
    return Seeded(rows, created)


def seed_villages(centers: dict[str, ServiceCenter]) -> Seeded[Village]:
    """Each village belongs to its nearest service center."""
    existing = Village.objects.filter(county=COUNTY, name__in=VILLAGE_NAMES)
    before = existing.count()
    Village.objects.bulk_create(
        [
            Village(
                name=name,
                county=COUNTY,
                lat=lat,
                lng=lng,
                service_center=centers[nearest_center_name(lat, lng)],
            )
            for name, (lat, lng) in village_places().items()
        ],
        ignore_conflicts=True,
    )
    rows = {v.name: v for v in existing.select_related("service_center")}
    return Seeded(rows, len(rows) - before)


def _insert_users(role: str, users: list[User]) -> Seeded[User]:
    """Insert the users whose phone is not taken yet; all of them share one password hash.

    One hash per role on purpose: hashing each of ~100 passwords (PBKDF2, ~0.3 s each, as
    `user_register` does) would make the seed take half a minute. Demo accounts only;
    real accounts go through the services in marketplace.accounts.services.
    """
    phones = [user.phone for user in users]
    before = set(User.objects.filter(phone__in=phones).values_list("phone", flat=True))
    missing = [user for user in users if user.phone not in before]
    if missing:
        password_validation.validate_password(PASSWORDS[role], missing[0])
        password = make_password(PASSWORDS[role])
        for user in missing:
            user.password = password
        User.objects.bulk_create(missing, ignore_conflicts=True)
    rows = User.objects.filter(phone__in=phones).in_bulk(field_name="phone")
    return Seeded(rows, len(rows) - len(before))


def _person_name(rng: random.Random, taken: set[str], village_name: str = "") -> str:
    """A name not used yet; in a 李家村 most people are called 李."""
    home_surname = village_name[:1] if village_name[:1] in SURNAMES else ""
    while True:
        surname = home_surname if home_surname and rng.random() < 0.6 else rng.choice(SURNAMES)
        name = surname + rng.choice(GIVEN_NAMES)
        if name not in taken:
            taken.add(name)
            return name


def _give_exact_place(user: User, rng: random.Random, village: Village) -> None:
    town = village.service_center.name.removesuffix("服务中心")
    group, house = rng.randint(1, 8), rng.randint(1, 60)
    user.address = f"{COUNTY}{town}{village.name}{group}组{house}号"
    km = rng.uniform(*HOME_DISTANCE_KM)
    user.lat, user.lng = _point_near(rng, float(village.lat), float(village.lng), km)


def seed_staff(centers: dict[str, ServiceCenter]) -> Seeded[User]:
    """One staff member per center, staff n working at the n-th center."""
    rng, taken = _rng("staff"), set()
    users = [
        User(
            phone=demo_phone(Role.STAFF, n),
            name=_person_name(rng, taken),
            role=Role.STAFF,
            service_center=centers[spec.name],
        )
        for n, spec in enumerate(CENTERS, start=1)
    ]
    return _insert_users(Role.STAFF, users)


def seed_farmers(villages: dict[str, Village]) -> Seeded[User]:
    """Every village has one or two farmers; every other farmer gave the farm's address."""
    rng, taken = _rng("farmers"), set()
    homes = [villages[name] for name in VILLAGE_NAMES]
    rng.shuffle(homes)
    users = []
    for n in range(1, FARMER_COUNT + 1):
        village = homes[(n - 1) % len(homes)]
        user = User(
            phone=demo_phone(Role.FARMER, n),
            name=_person_name(rng, taken, village.name),
            role=Role.FARMER,
            village=village,
        )
        if n % 2 == 1:
            _give_exact_place(user, rng, village)
        users.append(user)
    return _insert_users(Role.FARMER, users)


def _buyer_kinds(rng: random.Random) -> list[str]:
    rest = [kind for kind, count in BUYER_KINDS.items() for _ in range(count - 1)]
    rng.shuffle(rest)
    return [*BUYER_KINDS, *rest]


def seed_buyers(villages: dict[str, Village]) -> Seeded[User]:
    """Businesses always give their exact place; every third household does."""
    rng, taken = _rng("buyers"), set()
    homes = [villages[name] for name in VILLAGE_NAMES]
    users, households = [], 0
    for n, kind in enumerate(_buyer_kinds(rng), start=1):
        village = rng.choice(homes)
        if kind == BuyerKind.HOUSEHOLD:
            name = _person_name(rng, taken, village.name)
            households += 1
        else:
            name = village.name + rng.choice(BUSINESS_SUFFIXES[kind])
        user = User(
            phone=demo_phone(Role.BUYER, n),
            name=name,
            role=Role.BUYER,
            village=village,
            buyer_kind=kind,
        )
        if kind != BuyerKind.HOUSEHOLD or households % 3 == 1:
            _give_exact_place(user, rng, village)
        users.append(user)
    return _insert_users(Role.BUYER, users)


def seed_listings(farmers: dict[str, User]) -> Seeded[Listing]:
    """10 to 25 listings per farmer, ~1,000 in all (see listings.demo); the dates of the
    inserted ones are relative to today."""
    rows, created = listings_demo.seed_listings(
        farmers.values(), seed=f"{SEED}:listings", today=timezone.localdate()
    )
    return Seeded(rows, created)


@dataclass(frozen=True)
class VehicleSpec:
    name: str
    capacity_kg: Decimal
    cost_per_km: Decimal
    refrigerated: bool = False


VAN = VehicleSpec("金杯面包车", Decimal(800), Decimal("1.20"))
COLD_TRUCK = VehicleSpec("冷藏车", Decimal(1500), Decimal("2.60"), refrigerated=True)
TRUCK = VehicleSpec("小货车", Decimal(2000), Decimal("1.80"))
TRICYCLE = VehicleSpec("电动三轮车", Decimal(300), Decimal("0.40"))
# The main town has the biggest fleet; the hill town in the west has no cold truck.
FLEETS = {
    "青山镇服务中心": (VAN, COLD_TRUCK, TRUCK, TRICYCLE),
    "石门镇服务中心": (VAN, TRUCK),
    "溪口镇服务中心": (VAN, COLD_TRUCK, TRUCK),
}
SHIFT = (time(7, 0), time(18, 0))


def seed_vehicles(centers: dict[str, ServiceCenter]) -> Seeded[Vehicle]:
    """Each center's fleet (FLEETS: a fixed table, nothing random), keyed "center/vehicle";
    the unique (center, name) index skips the vehicles already there."""
    wanted = {(center_name, spec.name) for center_name, fleet in FLEETS.items() for spec in fleet}

    def demo_fleet() -> dict[str, Vehicle]:
        vehicles = Vehicle.objects.filter(
            service_center__in=[centers[name] for name in FLEETS]
        ).select_related("service_center")
        return {
            f"{v.service_center.name}/{v.name}": v
            for v in vehicles
            if (v.service_center.name, v.name) in wanted
        }

    before = len(demo_fleet())
    Vehicle.objects.bulk_create(
        [
            Vehicle(
                service_center=centers[center_name],
                name=spec.name,
                capacity_kg=spec.capacity_kg,
                refrigerated=spec.refrigerated,
                shift_start=SHIFT[0],
                shift_end=SHIFT[1],
                cost_per_km=spec.cost_per_km,
            )
            for center_name, fleet in FLEETS.items()
            for spec in fleet
        ],
        ignore_conflicts=True,
    )
    rows = demo_fleet()
    return Seeded(rows, len(rows) - before)


def refuse_unless_allowed() -> None:
    """The demo county's staff, farmers and buyers sign in with passwords printed in the
    README: loaded into a production database they would be open doors. Production settings
    refuse it unless DEMO_DATA_ALLOWED says this deployment is a demo."""
    if not settings.DEMO_DATA_ALLOWED:
        raise CommandError(
            "Demo data is off here (DEMO_DATA_ALLOWED=false, production's default): its "
            "accounts' passwords are public. Set DEMO_DATA_ALLOWED=true for a demo deployment."
        )


@transaction.atomic
def seed_demo_county() -> dict[str, Seeded]:
    """Seed every kind of demo data in one transaction; returns each step's result."""
    centers = seed_service_centers()
    villages = seed_villages(centers.rows)
    staff = seed_staff(centers.rows)
    farmers = seed_farmers(villages.rows)
    return {
        "service centers": centers,
        "villages": villages,
        "staff": staff,
        "farmers": farmers,
        "buyers": seed_buyers(villages.rows),
        "listings": seed_listings(farmers.rows),
        "vehicles": seed_vehicles(centers.rows),
    }


@dataclass(frozen=True)
class DemoLogin:
    role: str
    phone: str
    password: str
    name: str
    place: str


def demo_logins() -> list[DemoLogin]:
    """Logins worth printing: every staff member, three farmers, one buyer of each kind."""
    phones = [
        *demo_phones(Role.STAFF),
        *demo_phones(Role.FARMER)[:3],
        *demo_phones(Role.BUYER)[: len(BUYER_KINDS)],
    ]
    users = User.objects.filter(phone__in=phones).select_related("village", "service_center")
    by_phone = {user.phone: user for user in users}
    logins = []
    for phone in phones:
        if (user := by_phone.get(phone)) is None:
            continue
        home = user.service_center if user.role == Role.STAFF else user.village
        place = home.name if home else ""
        if user.buyer_kind:
            place = f"{place}, {user.buyer_kind}"
        logins.append(DemoLogin(user.role, phone, PASSWORDS[user.role], user.name, place))
    return logins
