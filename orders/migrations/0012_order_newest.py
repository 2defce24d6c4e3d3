from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    # Built without locking out new orders.
    atomic = False

    dependencies = [
        ("orders", "0011_order_hand_over_wrong_codes"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="order",
            index=models.Index(fields=["-created_at", "-id"], name="order_newest"),
        ),
    ]
