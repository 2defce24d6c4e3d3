"""WSGI entry of the order benchmark: marketplace.wsgi plus the bench-only variants named in
ORDERS_BENCH_VARIANTS (none by default: then it is exactly marketplace.wsgi's application)."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.orders_settings")

from bench import orders_variants
from marketplace.wsgi import application

orders_variants.apply()

__all__ = ["application"]
