"""The router every app's API registers its viewsets with."""

from rest_framework.routers import SimpleRouter

# What a route's id may be: ASCII digits. Django's <int:…> converter takes the same.
ID_PATTERN = "[0-9]+"


class Router(SimpleRouter):
    """DRF's SimpleRouter, taking only ASCII digits as an object's id in a URL.

    DRF's lookup pattern is "anything up to the next slash or dot", and the id then goes
    through int(), which also reads other scripts' digits (`١٢`), underscores (`1_2`), signs
    and surrounding spaces: `/orders/١٢/` would answer order 12. Every primary key here is
    an integer (DEFAULT_AUTO_FIELD), so a lookup by it (DRF's default) matches digits only,
    and anything else is a 404 before the view runs. A viewset looking up by another field
    (a slug) or naming its own `lookup_value_regex` keeps its pattern."""

    def get_lookup_regex(self, viewset, lookup_prefix: str = "") -> str:
        lookup_field = getattr(viewset, "lookup_field", "pk")
        if lookup_field in ("pk", "id") and getattr(viewset, "lookup_value_regex", None) is None:
            lookup_url_kwarg = getattr(viewset, "lookup_url_kwarg", None) or lookup_field
            return f"(?P<{lookup_prefix}{lookup_url_kwarg}>{ID_PATTERN})"
        return super().get_lookup_regex(viewset, lookup_prefix)
