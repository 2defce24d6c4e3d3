"""Settings for the staff-lists benchmark: the order benchmark's production settings
(bench/orders_settings.py) on a database of its own, `marketplace_staff_bench`.

    DJANGO_SETTINGS_MODULE=bench.staff_settings PYTHONPATH=. ...
"""

import os

# Before bench.orders_settings reads it (it only sets a default); it refuses a database
# whose name does not end in _bench.
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/marketplace_staff_bench")

from bench.orders_settings import *  # noqa: F403
