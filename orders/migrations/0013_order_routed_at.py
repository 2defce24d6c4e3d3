from django.db import migrations, models

# Every order with shipments was routed: when its first shipment was made. One statement;
# re-running it (after a rollout during which the previous release still routed orders)
# only fills what is missing.
BACKFILL = """
UPDATE orders_order o
SET routed_at = (SELECT min(s.created_at) FROM logistics_shipment s WHERE s.order_id = o.id)
WHERE o.routed_at IS NULL
  AND EXISTS (SELECT 1 FROM logistics_shipment s WHERE s.order_id = o.id)
"""


class Migration(migrations.Migration):
    # The column comes in its own short transaction; the fill-in then takes row locks only,
    # not the column's lock on the whole table (readers of every order) until it is done.
    atomic = False

    dependencies = [
        ("orders", "0012_order_newest"),
        ("logistics", "0009_shipment_newest_pickup"),
    ]

    operations = [
        migrations.AddField(
            model_name="order",
            name="routed_at",
            # NULL by default, in the database too: a row the previous release inserts
            # during a rolling deploy is an order not routed yet, as it is.
            field=models.DateTimeField(blank=True, db_default=None, default=None, null=True),
        ),
        migrations.RunSQL(BACKFILL, reverse_sql=migrations.RunSQL.noop, elidable=True),
    ]
