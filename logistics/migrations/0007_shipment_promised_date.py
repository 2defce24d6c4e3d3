# A shipment's delivery_date moves on with every day it misses; promised_date keeps the date
# promised to the buyer, so the planner can tell goods running late from goods in transit.
# Existing shipments get their delivery date as it is now (what they missed before is not
# recorded anywhere else).

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('logistics', '0006_route_duration_min_help'),
    ]

    operations = [
        migrations.AddField(
            model_name='shipment',
            name='promised_date',
            field=models.DateField(null=True),
        ),
        migrations.RunSQL(
            "UPDATE logistics_shipment SET promised_date = delivery_date",
            reverse_sql=migrations.RunSQL.noop,
        ),
        migrations.AlterField(
            model_name='shipment',
            name='promised_date',
            field=models.DateField(help_text='The delivery date promised to the buyer when the order was routed; it never moves, so delivery_date past it is how many days the goods are late.'),
        ),
        migrations.AlterField(
            model_name='shipment',
            name='delivery_date',
            field=models.DateField(help_text='The day the goods are to reach the buyer: the promised date, later once a day was missed (a day that did not fit, a failed stop, a late transfer).'),
        ),
    ]
