"""The benchmark's URLconf (bench.settings.ROOT_URLCONF): the real site, plus

- /bench/naive/listings/          the naive ModelViewSet (bench/naive.py)
- /bench/variants/<name>/listings/ bench-only variants of our list view (bench/variants.py)
"""

from django.urls import include, path
from rest_framework.routers import SimpleRouter

from bench import variants
from bench.naive import NaiveListingViewSet
from marketplace import urls as app_urls
from marketplace.urls import handler400, handler403, handler404, handler500

naive = SimpleRouter()
naive.register("listings", NaiveListingViewSet, basename="naive-listing")

urlpatterns = [
    path("bench/naive/", include(naive.urls)),
    path("bench/variants/", include(variants.urlpatterns)),
    *app_urls.urlpatterns,
]

__all__ = ["handler400", "handler403", "handler404", "handler500", "urlpatterns"]
