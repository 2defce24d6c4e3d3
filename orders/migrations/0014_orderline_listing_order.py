from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models

# The index Django made for the foreign key alone: (listing, order) serves every lookup by
# listing it served, so the lines keep one index on the listing, not two.
FOREIGN_KEY_INDEX = "orders_orderline_listing_id_5ddb1180"


class Migration(migrations.Migration):
    # Built and dropped without locking out new orders' lines.
    atomic = False

    dependencies = [
        ("listings", "0004_listing_place_on_grid"),
        ("orders", "0013_order_routed_at"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="orderline",
            index=models.Index(fields=["listing", "order"], name="orderline_listing_order"),
        ),
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.RunSQL(
                    f'DROP INDEX CONCURRENTLY IF EXISTS "{FOREIGN_KEY_INDEX}"',
                    reverse_sql=f'CREATE INDEX CONCURRENTLY IF NOT EXISTS "{FOREIGN_KEY_INDEX}" '
                    'ON "orders_orderline" ("listing_id")',
                )
            ],
            state_operations=[
                migrations.AlterField(
                    model_name="orderline",
                    name="listing",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=models.deletion.PROTECT,
                        related_name="order_lines",
                        to="listings.listing",
                    ),
                )
            ],
        ),
    ]
