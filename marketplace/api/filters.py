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


class _TrueOrFalseField(forms.Field):
    def to_python(self, value):
        text = (value or "").strip().lower()
        if text in ("", "true", "1", "false", "0"):
            return None if not text else text in ("true", "1")
        raise forms.ValidationError("Must be true or false.", code="invalid")


class BooleanFilter(filters.BooleanFilter):
    """true or false (1 or 0, any case); an empty value filters nothing. django-filter's
    reads anything else as no filter at all: `?unread=yes` answered every notification, read
    ones too. Here it is 400 naming the parameter, as a bad value of any other filter is."""

    field_class = _TrueOrFalseField

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("widget", forms.TextInput)
        super().__init__(*args, **kwargs)
