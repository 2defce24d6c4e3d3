"""The produce categories every environment has (slug, English, 简体中文)."""

CATEGORIES = [
    ("vegetables", "Vegetables", "蔬菜"),
    ("fruit", "Fruit", "水果"),
    ("grain", "Grain and rice", "粮油米面"),
    ("legumes", "Beans and legumes", "豆类"),
    ("eggs", "Eggs", "禽蛋"),
    ("meat", "Meat", "肉类"),
    ("poultry", "Poultry", "家禽"),
    ("fish", "Fish and aquatic", "水产"),
    ("dairy", "Dairy", "奶制品"),
    ("tea", "Tea", "茶叶"),
    ("honey", "Honey", "蜂蜜"),
    ("mushrooms", "Mushrooms", "菌菇"),
    ("nuts", "Nuts and seeds", "坚果"),
    ("herbs", "Herbs and spices", "香草调料"),
    ("dried", "Dried and preserved", "干货腌制"),
]


def ensure_categories(category_model) -> None:
    """Create or update the categories (takes the model so migrations can pass theirs)."""
    for position, (slug, name, name_zh) in enumerate(CATEGORIES):
        category_model.objects.update_or_create(
            slug=slug, defaults={"name": name, "name_zh": name_zh, "position": position}
        )
