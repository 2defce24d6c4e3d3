"""Demo listings: what the farmers of the demo county (logistics.demo) have on offer.

A catalog of local produce (Chinese titles, typical unit, price in CNY per unit, shelf
life), and for every farmer 10 to 25 of its products, mostly from the two to four
categories that suit the farmer's village. Deterministic: each farmer's plan comes from a
generator seeded by the farmer's phone, the number of listings per farmer from one seeded
by the set of farmers. Idempotent: a listing is found by (farmer, title), and only the
missing ones are inserted, so a second run changes nothing.

Dates are relative to the day of seeding (harvests from ten days ago to five days ahead,
everything still on offer today), so a listing inserted on another day has other dates.
"""

import math
import random
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

from django.db import transaction

from listings.models import FIXED_UNIT_WEIGHT_KG, Category, Listing, ListingStatus, Unit
from listings.services import listing_place, search_vector_for
from marketplace.accounts.models import Role, User

LISTING_COUNT = 1000  # for the demo county's 60 farmers
PER_FARMER = (10, 25)
CATEGORIES_PER_FARMER = (2, 4)
MAIN_SHARE = 0.75  # at least this share of a farmer's listings come from their categories
HARVEST_DAYS_AGO, HARVEST_DAYS_AHEAD = 10, 5
STORED_SHELF_LIFE_DAYS = 60  # keeps for months: harvested already, may be on offer for good
# Listings not on offer, so the demo shows every status a farmer meets; the rest are active.
OTHER_STATUSES = (
    (ListingStatus.DRAFT, 0.03),
    (ListingStatus.PAUSED, 0.03),
    (ListingStatus.SOLD_OUT, 0.03),
)
REMARKS = (
    "",
    "量大从优，欢迎饭店食堂长期订购。",
    "可到家里自提，也可送到服务中心。",
    "下单后当天备货。",
    "自家出产，数量有限。",
    "品质不满意可以退。",
    "欢迎先少量试购。",
)


@dataclass(frozen=True)
class Product:
    title: str
    category: str  # Category slug
    unit: str
    price: tuple[str, str]  # CNY per unit, lowest and highest
    quantity: tuple[int, int]  # units a farmer has on offer, fewest and most
    shelf_life_days: int
    description: str
    unit_weight_kg: str | None = None  # units other than kg and jin
    min_order: str = "1"
    cold: bool = False  # needs refrigeration
    organic: float = 0.0  # share of the farmers listing it who grow it organically


J, KG = Unit.JIN, Unit.KG
CRATE, BOX, BAG, PIECE = Unit.CRATE, Unit.BOX, Unit.BAG, Unit.PIECE
BUNCH, DOZEN, LITER = Unit.BUNCH, Unit.DOZEN, Unit.LITER

# fmt: off
CATALOG = (
    # Vegetables, mostly by the jin (斤, 0.5 kg); the bulky ones by the kg, as wholesalers do.
    Product("有机西红柿", "vegetables", J, ("4.5", "8.0"), (50, 400), 7,
            "自然成熟的沙瓤西红柿，酸甜多汁。", organic=1.0),
    Product("西红柿", "vegetables", J, ("2.5", "5.0"), (50, 500), 7,
            "露天种植，自然红熟，炒蛋做汤都好。"),
    Product("黄瓜", "vegetables", J, ("2.5", "4.5"), (30, 400), 5,
            "早上现摘的本地黄瓜，脆嫩带刺。", organic=0.2),
    Product("大白菜", "vegetables", KG, ("2.0", "4.0"), (50, 500), 20,
            "经霜的大白菜，包得紧实，炖煮都甜。", min_order="5"),
    Product("菠菜", "vegetables", J, ("3.0", "6.0"), (20, 200), 3,
            "红根菠菜，叶嫩无渣。", organic=0.2),
    Product("小青菜", "vegetables", J, ("2.5", "5.0"), (20, 300), 3,
            "上海青，清炒下面都好。", organic=0.3),
    Product("土豆", "vegetables", KG, ("3.0", "6.0"), (50, 400), 60,
            "沙地黄心土豆，个头均匀，耐储存。", min_order="5"),
    Product("茄子", "vegetables", J, ("2.5", "5.0"), (30, 300), 5,
            "本地长茄子，皮薄肉嫩。"),
    Product("青椒", "vegetables", J, ("3.0", "6.0"), (30, 300), 7,
            "薄皮青椒，微辣爽口。"),
    Product("白萝卜", "vegetables", KG, ("2.0", "5.0"), (50, 400), 20,
            "水分足，炖汤清甜。", min_order="5"),
    Product("老南瓜", "vegetables", PIECE, ("8", "18"), (10, 120), 60,
            "粉糯香甜，一个约六斤。", unit_weight_kg="3.0"),
    Product("鲜竹笋", "vegetables", J, ("4.0", "10.0"), (30, 300), 4,
            "山上现挖的竹笋，鲜嫩无苦味。"),
    # Fruit.
    Product("红富士苹果", "fruit", J, ("4.0", "7.0"), (100, 1000), 60,
            "山坡果园的红富士，脆甜多汁。", min_order="5"),
    Product("冰糖心苹果", "fruit", CRATE, ("60", "110"), (5, 60), 60,
            "整箱二十斤，果心带糖，适合送礼。", unit_weight_kg="10.0"),
    Product("翠冠梨", "fruit", J, ("4.0", "7.0"), (50, 500), 14,
            "皮薄肉细，汁多化渣。"),
    Product("水蜜桃", "fruit", BOX, ("45", "80"), (5, 80), 5,
            "一盒五斤，软甜多汁，轻拿轻放。", unit_weight_kg="2.5", cold=True),
    Product("东魁杨梅", "fruit", BOX, ("60", "150"), (5, 60), 3,
            "当天现摘，一盒五斤，冷藏保鲜。", unit_weight_kg="2.5", cold=True),
    Product("草莓", "fruit", BOX, ("40", "80"), (5, 60), 3,
            "大棚草莓，一盒三斤，香甜不酸。", unit_weight_kg="1.5", cold=True, organic=0.2),
    Product("红心猕猴桃", "fruit", J, ("5.0", "9.0"), (50, 400), 20,
            "放软即食，酸甜适口。"),
    Product("椪柑", "fruit", CRATE, ("40", "80"), (5, 60), 30,
            "一箱二十斤，皮薄易剥。", unit_weight_kg="10.0"),
    Product("西瓜", "fruit", PIECE, ("20", "40"), (10, 150), 14,
            "沙瓤西瓜，一个十斤左右。", unit_weight_kg="5.0"),
    Product("柿子", "fruit", J, ("3.0", "6.0"), (30, 300), 10,
            "自然软熟的柿子，甜如蜜。"),
    # Grain, rice and oil.
    Product("五常大米", "grain", BAG, ("60", "110"), (10, 200), 365,
            "稻花香品种，一袋十斤，米香浓郁。", unit_weight_kg="5.0"),
    Product("农家晚稻米", "grain", BAG, ("50", "90"), (10, 300), 365,
            "今年新米，一袋二十斤，软糯可口。", unit_weight_kg="10.0", organic=0.2),
    Product("糯米", "grain", J, ("4.0", "7.0"), (50, 500), 365,
            "包粽子做年糕都好。", min_order="5"),
    Product("小米", "grain", J, ("5.0", "9.0"), (30, 300), 365,
            "黄小米，熬粥有米油。"),
    Product("土榨菜籽油", "grain", LITER, ("25", "40"), (20, 300), 365,
            "土法压榨的菜籽油，香味浓。", unit_weight_kg="0.92"),
    Product("手工挂面", "grain", J, ("5.0", "9.0"), (20, 200), 180,
            "手工拉制晾晒，久煮不糊。"),
    # Beans.
    Product("黄豆", "legumes", J, ("4.0", "6.0"), (50, 500), 365,
            "磨豆浆做豆腐都好。"),
    Product("绿豆", "legumes", J, ("5.0", "8.0"), (30, 300), 365,
            "颗粒饱满，易煮开花。"),
    Product("毛豆", "legumes", J, ("3.0", "6.0"), (30, 300), 3,
            "带荚鲜毛豆，盐水煮最香。"),
    Product("豇豆", "legumes", J, ("3.0", "5.0"), (30, 300), 4,
            "长豇豆，嫩而无筋。"),
    Product("四季豆", "legumes", J, ("3.5", "6.0"), (30, 300), 5,
            "嫩荚四季豆，干煸清炒皆宜。"),
    # Eggs.
    Product("土鸡蛋", "eggs", DOZEN, ("18", "30"), (10, 150), 30,
            "山上散养土鸡下的蛋，蛋黄金黄。", unit_weight_kg="0.6", organic=0.1),
    Product("麻鸭蛋", "eggs", DOZEN, ("18", "28"), (10, 120), 30,
            "河边放养的麻鸭下的蛋，个大。", unit_weight_kg="0.85"),
    Product("咸鸭蛋", "eggs", PIECE, ("2.0", "3.5"), (50, 500), 60,
            "自家腌的咸鸭蛋，流油起沙。", unit_weight_kg="0.08", min_order="10"),
    Product("鹅蛋", "eggs", PIECE, ("5.0", "8.0"), (20, 200), 30,
            "大个鹅蛋，一个三两左右。", unit_weight_kg="0.15", min_order="2"),
    Product("松花皮蛋", "eggs", DOZEN, ("18", "30"), (10, 100), 90,
            "传统工艺腌制，溏心不涩。", unit_weight_kg="0.8"),
    # Meat, fresh from the village butcher.
    Product("黑猪肉", "meat", J, ("25", "40"), (20, 300), 3,
            "山里散养的黑猪，每周现杀，肥瘦相间。", cold=True),
    Product("土猪五花肉", "meat", J, ("22", "35"), (20, 200), 3,
            "吃粮食长大的土猪，做红烧肉最香。", cold=True),
    Product("猪排骨", "meat", J, ("28", "40"), (20, 150), 3,
            "肋排现剁，煲汤红烧都好。", cold=True),
    Product("山羊肉", "meat", J, ("40", "60"), (10, 120), 3,
            "山坡放养的山羊，肉质细嫩不膻。", cold=True),
    Product("黄牛肉", "meat", J, ("45", "65"), (10, 120), 3,
            "本地黄牛，肉紧实有嚼劲。", cold=True),
    # Poultry, whole birds killed and cleaned on the day.
    Product("散养草鸡", "poultry", PIECE, ("80", "150"), (5, 80), 2,
            "放养一年以上的草鸡，现杀处理干净。", unit_weight_kg="1.5", cold=True),
    Product("老母鸡", "poultry", PIECE, ("100", "180"), (5, 60), 2,
            "两年以上的老母鸡，炖汤最补。", unit_weight_kg="2.0", cold=True),
    Product("土鸭", "poultry", PIECE, ("60", "100"), (5, 80), 2,
            "河塘放养的麻鸭，做老鸭煲。", unit_weight_kg="2.0", cold=True),
    Product("大白鹅", "poultry", PIECE, ("150", "250"), (3, 40), 2,
            "吃青草长大的白鹅。", unit_weight_kg="4.0", cold=True),
    Product("乳鸽", "poultry", PIECE, ("25", "40"), (10, 100), 2,
            "现杀乳鸽，清炖红烧皆可。", unit_weight_kg="0.4", cold=True),
    # Fish and shrimp from ponds, streams and the reservoir.
    Product("鲫鱼", "fish", J, ("10", "16"), (20, 300), 2,
            "水库野生鲫鱼，当天现捞。", cold=True),
    Product("草鱼", "fish", J, ("8.0", "13.0"), (50, 500), 2,
            "吃草长大的草鱼，每条三到五斤。", cold=True),
    Product("胖头鱼", "fish", J, ("10", "15"), (50, 400), 2,
            "水库胖头鱼，鱼头炖豆腐一绝。", cold=True),
    Product("河虾", "fish", J, ("40", "70"), (10, 100), 1,
            "溪里的小河虾，白灼油爆都鲜。", cold=True),
    Product("泥鳅", "fish", J, ("20", "30"), (10, 150), 2,
            "稻田里养的泥鳅，个个鲜活。", cold=True),
    # Dairy.
    Product("鲜牛奶", "dairy", LITER, ("8.0", "14.0"), (20, 200), 3,
            "当天挤的鲜奶，巴氏杀菌后装瓶。", unit_weight_kg="1.03", cold=True),
    Product("鲜羊奶", "dairy", LITER, ("15", "25"), (10, 100), 3,
            "山羊奶，煮沸后饮用。", unit_weight_kg="1.03", cold=True),
    Product("农家酸奶", "dairy", BOX, ("20", "35"), (10, 100), 7,
            "鲜奶自然发酵，不加香精，一盒两斤。", unit_weight_kg="1.0", cold=True),
    Product("手工奶酪", "dairy", PIECE, ("25", "45"), (10, 80), 30,
            "小批量手工制作，奶香浓。", unit_weight_kg="0.25", cold=True),
    # Tea, by the box of half a jin.
    Product("黄山毛峰", "tea", BOX, ("120", "300"), (5, 80), 365,
            "明前嫩芽，一盒半斤，汤色清亮。", unit_weight_kg="0.25"),
    Product("明前龙井", "tea", BOX, ("200", "500"), (5, 60), 365,
            "清明前手工炒制，豆香浓郁，一盒半斤。", unit_weight_kg="0.25", organic=0.2),
    Product("高山云雾茶", "tea", BOX, ("100", "260"), (5, 80), 365,
            "海拔八百米的茶园，耐冲泡。", unit_weight_kg="0.25", organic=0.4),
    Product("九曲红梅红茶", "tea", BOX, ("80", "200"), (5, 80), 540,
            "条索紧细，汤色红艳。", unit_weight_kg="0.25"),
    Product("安吉白茶", "tea", BOX, ("150", "400"), (5, 60), 365,
            "叶白脉绿，鲜爽回甘。", unit_weight_kg="0.25"),
    # Honey.
    Product("土蜂蜜", "honey", J, ("40", "80"), (10, 200), 730,
            "中华蜂一年一割的土蜂蜜，天然成熟。"),
    Product("百花蜜", "honey", PIECE, ("35", "60"), (10, 150), 730,
            "山花百花蜜，一瓶一斤。", unit_weight_kg="0.5"),
    Product("槐花蜜", "honey", J, ("45", "70"), (10, 150), 730,
            "色浅味清，不易结晶。"),
    Product("油菜花蜜", "honey", J, ("30", "50"), (10, 200), 730,
            "春天的油菜花蜜，结晶细腻。"),
    Product("蜂巢蜜", "honey", BOX, ("60", "120"), (5, 60), 365,
            "整块蜂巢，连蜡一起嚼，一盒一斤。", unit_weight_kg="0.5"),
    # Mushrooms.
    Product("香菇", "mushrooms", J, ("8.0", "14.0"), (20, 200), 5,
            "段木种植的鲜香菇，肉厚味浓。", cold=True, organic=0.2),
    Product("平菇", "mushrooms", J, ("4.0", "8.0"), (20, 200), 4,
            "大棚平菇，炒肉做汤都鲜。", cold=True),
    Product("杏鲍菇", "mushrooms", J, ("6.0", "10.0"), (20, 200), 7,
            "肉质肥厚，口感像鲍鱼。", cold=True),
    Product("茶树菇", "mushrooms", J, ("12", "20"), (10, 100), 5,
            "鲜茶树菇，煲汤香脆。", cold=True),
    Product("黑木耳", "mushrooms", J, ("40", "70"), (10, 100), 365,
            "椴木秋耳，泡发率高。"),
    # Nuts and seeds.
    Product("核桃", "nuts", J, ("12", "20"), (20, 300), 180,
            "薄壳核桃，手捏即开。"),
    Product("山核桃", "nuts", J, ("40", "70"), (10, 150), 180,
            "手剥山核桃，椒盐口味。"),
    Product("板栗", "nuts", J, ("6.0", "12.0"), (30, 400), 30,
            "山里的小板栗，糖炒最香。"),
    Product("香榧", "nuts", J, ("150", "260"), (5, 50), 180,
            "香榧子炒制，香脆。"),
    Product("红衣花生", "nuts", J, ("5.0", "8.0"), (30, 400), 180,
            "颗粒饱满，煮炒皆宜。"),
    # Herbs and spices.
    Product("小葱", "herbs", BUNCH, ("1.5", "3.0"), (20, 200), 4,
            "香葱一把半斤，拌面炒蛋都香。", unit_weight_kg="0.25", min_order="2"),
    Product("香菜", "herbs", BUNCH, ("1.5", "3.0"), (20, 200), 3,
            "本地小香菜，香味足。", unit_weight_kg="0.2", min_order="2"),
    Product("紫苏", "herbs", BUNCH, ("2.0", "4.0"), (10, 100), 3,
            "新鲜紫苏叶，烧鱼去腥。", unit_weight_kg="0.15", min_order="2"),
    Product("老姜", "herbs", J, ("5.0", "9.0"), (30, 300), 60,
            "黄心老姜，辣味足。"),
    Product("紫皮大蒜", "herbs", J, ("4.0", "8.0"), (30, 300), 90,
            "蒜瓣饱满，蒜味浓。"),
    Product("干辣椒", "herbs", J, ("15", "25"), (10, 150), 365,
            "朝天椒晒干，香辣。"),
    # Dried and preserved.
    Product("笋干", "dried", J, ("40", "70"), (10, 150), 365,
            "春笋煮熟晒干，烧肉最香。"),
    Product("梅干菜", "dried", J, ("15", "30"), (10, 200), 365,
            "自家晒的梅干菜，配五花肉。"),
    Product("干香菇", "dried", J, ("40", "70"), (10, 150), 365,
            "花菇晒干，香味浓郁。"),
    Product("烟熏腊肉", "dried", J, ("40", "60"), (10, 150), 120,
            "冬至后腌制，柴火烟熏。"),
    Product("红薯干", "dried", J, ("10", "18"), (10, 200), 180,
            "红心番薯蒸熟晒干，软糯有嚼劲。"),
    Product("酱鸭", "dried", PIECE, ("60", "100"), (5, 60), 30,
            "秘制酱鸭，挂晒入味。", unit_weight_kg="1.2", cold=True),
)

# What the land of each village suits: its farmers mostly list from these categories.
PROFILES = {
    "菜园": (("vegetables", "legumes", "herbs", "eggs"),
             ("李家村", "石桥村", "黄泥坎", "白沙村", "赵村", "吴家桥", "朱家弄")),
    "稻田": (("grain", "legumes", "vegetables", "poultry"),
             ("王庄", "下洋村", "高坪村", "周家畈", "何家垄")),
    "茶山": (("tea", "honey", "mushrooms", "nuts"),
             ("陈家岭", "茶园村", "东岭村", "南山村", "孙家山")),
    "山林": (("mushrooms", "nuts", "dried", "honey", "meat"),
             ("张家坞", "枫林村", "竹园村", "后山村", "北坑村", "金竹坪")),
    "果园": (("fruit", "nuts", "honey", "dried"),
             ("杨梅岭", "桃源村", "西坞村", "郑家坞", "梅岭村")),
    "水乡": (("fish", "poultry", "vegetables", "eggs"),
             ("柳树湾", "上塘村", "溪头村", "新塘村", "双溪村", "荷花塘", "徐家埠")),
    "牧场": (("meat", "poultry", "eggs", "dairy"),
             ("大坑村", "前岙村", "青石村", "马家湾", "罗家坪")),
}
# fmt: on
KITCHEN_GARDEN = ("vegetables", "herbs", "eggs", "legumes")  # what anyone may have besides
VILLAGE_PROFILE = {
    village: categories for categories, villages in PROFILES.values() for village in villages
}


def _step(high: Decimal) -> Decimal:
    """Prices are round: 3.7 元 a jin, 57.5 元 a jin of honey, 245 元 a box of tea."""
    if high <= 20:
        return Decimal("0.1")
    return Decimal("0.5") if high <= 100 else Decimal(5)


def _price(rng: random.Random, product: Product) -> Decimal:
    low, high = map(Decimal, product.price)
    step = _step(high)
    return (low + step * rng.randint(0, int((high - low) / step))).quantize(Decimal("0.01"))


def _quantity(rng: random.Random, product: Product) -> Decimal:
    low, high = product.quantity
    step = 10 if high >= 300 else 5 if high >= 100 else 1
    return Decimal(low + step * rng.randint(0, (high - low) // step))


def _dates(rng: random.Random, product: Product, today: date) -> tuple[date, date | None]:
    """Harvested recently enough to be fresh today (or, for fresh produce, soon to be), and
    on offer until it would spoil; produce that keeps for months may be on offer for good."""
    shelf_life = product.shelf_life_days
    stored = shelf_life >= STORED_SHELF_LIFE_DAYS
    days_ago = min(HARVEST_DAYS_AGO, (shelf_life - 1) // 2)
    harvest = today + timedelta(days=rng.randint(-days_ago, 0 if stored else HARVEST_DAYS_AHEAD))
    if stored and rng.random() < 0.4:
        return harvest, None
    on_offer = shelf_life - 1 if shelf_life <= 30 else rng.randint(20, 60)
    return harvest, harvest + timedelta(days=on_offer)


def _counts(farmers: list[User], seed: str) -> list[int]:
    """Listings per farmer, each within PER_FARMER, adding up to LISTING_COUNT when the
    farmers are as many as the demo county's."""
    rng = random.Random(f"{seed}:counts:{len(farmers)}")  # noqa: S311 - demo data
    low, high = PER_FARMER
    counts = [rng.randint(low, high) for _ in farmers]
    target = min(max(LISTING_COUNT, low * len(farmers)), high * len(farmers))
    while (total := sum(counts)) != target:
        i = rng.randrange(len(counts))
        if total > target and counts[i] > low:
            counts[i] -= 1
        elif total < target and counts[i] < high:
            counts[i] += 1
    return counts


def _by_category() -> dict[str, list[Product]]:
    products: dict[str, list[Product]] = {}
    for product in CATALOG:
        products.setdefault(product.category, []).append(product)
    return products


def _products_for(rng: random.Random, village_name: str, count: int) -> list[Product]:
    """`count` products, at least MAIN_SHARE of them from 2 to 4 of the village's categories,
    the rest mostly from the kitchen garden."""
    by_category = _by_category()
    profile = list(VILLAGE_PROFILE.get(village_name) or rng.choice(list(PROFILES.values()))[0])
    rng.shuffle(profile)
    fewest, most = CATEGORIES_PER_FARMER
    chosen = profile[: rng.randint(fewest, min(most, len(profile)))]
    main_needed = math.ceil(MAIN_SHARE * count)
    for category in profile[len(chosen) : most]:
        if sum(len(by_category[c]) for c in chosen) >= main_needed:
            break
        chosen.append(category)
    main = [product for c in chosen for product in by_category[c]]
    picked = rng.sample(main, min(len(main), count - rng.randint(0, count - main_needed)))
    garden = [p for p in CATALOG if p.category in KITCHEN_GARDEN and p.category not in chosen]
    others = [p for p in CATALOG if p.category not in KITCHEN_GARDEN and p.category not in chosen]
    for pool in (garden, others):
        picked += rng.sample(pool, min(len(pool), count - len(picked)))
    return picked


def _status(rng: random.Random) -> str:
    draw = rng.random()
    for status, share in OTHER_STATUSES:
        if draw < share:
            return status
        draw -= share
    return ListingStatus.ACTIVE


def _unit_weight(product: Product) -> Decimal:
    fixed = FIXED_UNIT_WEIGHT_KG.get(product.unit)
    if fixed is not None:
        return fixed
    if product.unit_weight_kg is None:
        raise ValueError(f"{product.title}: one {product.unit} weighs how much?")
    return Decimal(product.unit_weight_kg)


def _listing(
    rng: random.Random, farmer: User, product: Product, category: Category, today: date
) -> Listing:
    status = _status(rng)
    quantity = Decimal(0) if status == ListingStatus.SOLD_OUT else _quantity(rng, product)
    harvest_date, available_until = _dates(rng, product, today)
    remark = rng.choice(REMARKS)
    return Listing(
        farmer=farmer,
        category=category,
        title=product.title,
        description=product.description + remark,
        unit=product.unit,
        unit_weight_kg=_unit_weight(product),
        price=_price(rng, product),
        quantity_available=quantity,
        min_order_quantity=Decimal(product.min_order),
        harvest_date=harvest_date,
        available_until=available_until,
        shelf_life_days=product.shelf_life_days,
        is_organic=rng.random() < product.organic,
        needs_refrigeration=product.cold,
        status=status,
        **listing_place(farmer),
    )


def plan_listings(
    farmers: Iterable[User], categories: dict[str, Category], *, seed: str, today: date
) -> list[Listing]:
    """Every demo listing of these farmers (villages loaded), unsaved, in a shuffled order
    so that the newest-first pages mix farmers and produce. `categories` by slug."""
    farmers = sorted(
        (f for f in farmers if f.role == Role.FARMER and f.village_id), key=lambda f: f.phone
    )
    listings = []
    for farmer, count in zip(farmers, _counts(farmers, seed), strict=True):
        rng = random.Random(f"{seed}:{farmer.phone}")  # noqa: S311 - demo data
        for product in _products_for(rng, farmer.village.name, count):
            category = categories[product.category]
            listings.append(_listing(rng, farmer, product, category, today))
    random.Random(f"{seed}:order").shuffle(listings)  # noqa: S311 - demo data
    return listings


def _key(listing: Listing) -> str:
    return f"{listing.farmer.phone} {listing.title}"


@transaction.atomic
def seed_listings(
    farmers: Iterable[User], *, seed: str, today: date
) -> tuple[dict[str, Listing], int]:
    """Insert the farmers' demo listings that are missing. Returns every demo listing by
    natural key ("phone title") and how many this run inserted."""
    # Locked, so that two seeds running at once do not both insert the same listings.
    farmers = list(
        User.objects.select_for_update(of=("self",))
        .select_related("village")
        .filter(pk__in=[farmer.pk for farmer in farmers])
    )
    planned = plan_listings(
        farmers, Category.objects.in_bulk(field_name="slug"), seed=seed, today=today
    )
    demo_listings = Listing.objects.filter(
        farmer__in=farmers, title__in={listing.title for listing in planned}
    ).select_related("farmer")
    existing = {
        f"{phone} {title}" for phone, title in demo_listings.values_list("farmer__phone", "title")
    }
    missing = [listing for listing in planned if _key(listing) not in existing]
    Listing.objects.bulk_create(missing)
    # One UPDATE a row, as listings.services does (~0.7 ms each): faster than bulk_update,
    # whose CASE of 1,000 vector expressions takes longer to build.
    for listing in missing:
        Listing.objects.filter(pk=listing.pk).update(
            search_vector=search_vector_for(
                title=listing.title,
                description=listing.description,
                category=listing.category,
                farmer=listing.farmer,
            )
        )
    planned_keys = {_key(listing) for listing in planned}
    rows = {_key(listing): listing for listing in demo_listings.defer("search_vector")}
    return {key: row for key, row in rows.items() if key in planned_keys}, len(missing)
