from django.db import migrations

from listings.catalog import CATEGORIES, ensure_categories


def seed(apps, schema_editor):
    ensure_categories(apps.get_model("listings", "Category"))


def unseed(apps, schema_editor):
    apps.get_model("listings", "Category").objects.filter(
        slug__in=[slug for slug, _, _ in CATEGORIES]
    ).delete()


class Migration(migrations.Migration):
    dependencies = [("listings", "0001_initial")]

    operations = [migrations.RunPython(seed, unseed)]
