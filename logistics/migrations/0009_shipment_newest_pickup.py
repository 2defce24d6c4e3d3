from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    # Built without locking out writes to a table that grows with every order.
    atomic = False

    dependencies = [
        ("logistics", "0008_nightly_runs_and_last_wrong_code"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="shipment",
            index=models.Index(fields=["-pickup_date", "-id"], name="shipment_newest_pickup"),
        ),
    ]
