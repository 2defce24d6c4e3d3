# A shipment records the kilograms it holds on each of its booked days, so freeing or
# moving them gives back exactly what is there, and a pickup can bring them to the weighed
# weight. Until now every shipment held its ordered weight (weight_kg, kept in step with
# rejected lines) until cancelled or failed for good, when its days were freed. Null reads
# as that ordered weight, so only the shipments cancelled or failed are written (0), and
# rows the release before inserts during a rolling deploy (it books weight_kg) are right.

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("logistics", "0010_shipment_cash_collected"),
    ]

    operations = [
        migrations.AddField(
            model_name="shipment",
            name="booked_kg",
            field=models.DecimalField(
                blank=True,
                db_default=None,
                decimal_places=3,
                default=None,
                help_text="What it holds of its centers' capacity on each day it is booked "
                "on: as ordered, as weighed once picked up, 0 once its days are freed "
                "(cancelled, failed); null: as ordered (weight_kg).",
                max_digits=10,
                null=True,
            ),
        ),
        migrations.RunSQL(
            "UPDATE logistics_shipment SET booked_kg = 0 WHERE status IN ('cancelled', 'failed')",
            reverse_sql=migrations.RunSQL.noop,
        ),
        migrations.AddConstraint(
            model_name="shipment",
            constraint=models.CheckConstraint(
                condition=models.Q(("booked_kg__gte", 0)), name="shipment_booked_not_negative"
            ),
        ),
    ]
