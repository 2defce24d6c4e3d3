"""Query-string filters shared by the API's lists."""

from django import forms
from django_filters import rest_framework as filters
from drf_spectacular.utils import extend_schema_field

BIGGEST_ID = 2**63 - 1  # a bigint key


@extend_schema_field({"type": "integer", "minimum": 1, "maximum": BIGGEST_ID})
class IdFilter(filters.NumberFilter):
    """A row's id compared as a number: a whole one (1.5 is refused, not read as 1), and no
    lookup of the row, so an id the caller may not see answers as one that does not exist
    (nothing matches) rather than 400."""

    field_class = forms.IntegerField

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("min_value", 1)
        kwargs.setdefault("max_value", BIGGEST_ID)
        super().__init__(*args, **kwargs)
