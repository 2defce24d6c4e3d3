# A stop's load is kept to the gram, as the weights of the shipments it adds up are: to
# one decimal, 0.375 kg of eggs read 0.4 kg on board.

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("logistics", "0012_schedulerun_restarts"),
    ]

    operations = [
        migrations.AlterField(
            model_name="stop",
            name="load_kg",
            field=models.DecimalField(
                decimal_places=3, default=0, help_text="On board after this stop.", max_digits=10
            ),
        ),
    ]
