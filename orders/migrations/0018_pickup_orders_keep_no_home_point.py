from django.db import migrations

# An order collected at the center keeps its village's point, not its buyer's exact home
# (orders.services.order_place since then): its farmers read the point once it is
# confirmed. Orders placed before held the buyer's own place; this moves them to their
# village's. Their shipments deliver to the center and never held it.
MOVE_TO_VILLAGE = """
UPDATE orders_order AS o
   SET delivery_lat = v.lat, delivery_lng = v.lng
  FROM logistics_village AS v
 WHERE o.delivery_method = 'pickup'
   AND v.id = o.delivery_village_id
   AND (o.delivery_lat, o.delivery_lng) IS DISTINCT FROM (v.lat, v.lng)
"""


class Migration(migrations.Migration):
    dependencies = [("orders", "0017_notification_given_up")]

    operations = [migrations.RunSQL(MOVE_TO_VILLAGE, migrations.RunSQL.noop)]
