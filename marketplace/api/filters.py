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


TRUE_OR_FALSE = "Must be true or false."


def true_or_false(text: str | None) -> bool | None:
    """A query parameter's true or false (1 or 0, any case); None when empty or absent.
    Anything else raises ValueError: the caller answers 400 naming the parameter."""
    value = (text or "").strip().lower()
    if value in ("true", "1"):
        return True
    if value in ("false", "0"):
        return False
    if value:
        raise ValueError(value)
    return None


class _TrueOrFalseField(forms.Field):
    def to_python(self, value):
        try:
            return true_or_false(value)
        except ValueError:
            raise forms.ValidationError(TRUE_OR_FALSE, code="invalid") from None


class BooleanFilter(filters.BooleanFilter):
    """true or false (1 or 0, any case); an empty value filters nothing. django-filter's
    reads anything else as no filter at all: `?unread=yes` answered every notification, read
    ones too. Here it is 400 naming the parameter, as a bad value of any other filter is."""

    field_class = _TrueOrFalseField

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("widget", forms.TextInput)
        super().__init__(*args, **kwargs)
