"""Serializer helpers shared by the apps' APIs."""

import copy
from datetime import time
from typing import Any

from rest_framework import serializers
from rest_framework.validators import ProhibitSurrogateCharactersValidator

from marketplace.text import (
    CONTROL_CHARACTERS_DETAIL,
    CONTROL_CHARACTERS_NOT_ALLOWED,
    has_control_characters,
    shows_nothing,
)


class FieldsOnce:
    """For a serializer class: work out its fields once per class, not per instance.

    DRF builds every field again for each serializer instance (a ModelSerializer
    introspects its model to do so), nested ones included: for one order (lines, events,
    shipments and their legs) that was about 0.3 ms of CPU per answer, and a third of the
    order placement's input validation, a few per cent of a placement in all. Here the
    first instance of a class builds them and later ones get copies (`_copy`), bound to
    themselves as usual. For serializers whose fields depend only on the class, never on
    the instance, context or request (none overrides get_fields)."""

    def get_fields(self) -> dict[str, Any]:
        cls = type(self)
        built = cls.__dict__.get("_fields_built_once")
        if built is None:
            built = super().get_fields()  # type: ignore[misc]
            cls._fields_built_once = built  # a harmless race: both threads build the same
        return {name: _copy(field) for name, field in built.items()}


class FieldsOnceSerializer(FieldsOnce, serializers.Serializer):
    pass


class FieldsOnceModelSerializer(FieldsOnce, serializers.ModelSerializer):
    pass


def _copy(field: serializers.Field) -> serializers.Field:
    """A field of its own for a new serializer. A nested serializer, or a field with a child
    bound to it, is deep-copied as DRF does (the children must be bound to the copy). Any
    other field gets a shallow copy: DRF's deep copy builds it again from its arguments,
    which was most of the answer's CPU; binding then sets the copy's own name, parent and
    source, and nothing else in a field changes after it is built."""
    if (
        isinstance(field, serializers.BaseSerializer)
        or hasattr(field, "child")
        or hasattr(field, "child_relation")
    ):
        return copy.deepcopy(field)
    return copy.copy(field)


class SlugRelatedField(serializers.SlugRelatedField):
    """DRF's, refusing what its CharField refuses before the lookup: a NUL character or an
    unpaired surrogate cannot be sent to PostgreSQL, so the query would fail with a 500."""

    def to_internal_value(self, data):
        if isinstance(data, str):
            if "\x00" in data:
                raise serializers.ValidationError(
                    "Null characters are not allowed.", code="null_characters_not_allowed"
                )
            ProhibitSurrogateCharactersValidator()(data)
        return super().to_internal_value(data)


class PrimaryKeyRelatedField(serializers.PrimaryKeyRelatedField):
    """DRF's, taking only a whole number (or its digits as a string) as the key, as DRF's
    IntegerField does. DRF's hands the value to the lookup as it comes, and the lookup's
    int() turns 2.5 into 2: a client's mistake would quietly pick record 2."""

    def to_internal_value(self, data):
        if isinstance(data, bool) or not str(data).isdecimal():
            self.fail("incorrect_type", data_type=type(data).__name__)
        return super().to_internal_value(data)


class TextLineField(serializers.CharField):
    """One line of text that people read: a name, a title. DRF's CharField trims spaces and
    refuses it blank, but takes what shows as nothing (zero-width spaces, a byte-order mark:
    format characters, which trimming keeps) and control characters (a new line, a tab, a
    terminal escape), which break the lines of a message, a driver's stop or a load list.
    Refused "blank" when nothing in it shows, `control_characters_not_allowed` for a control
    character or a text direction override, embedding or isolate (it turns the text after it
    around, to the end of the line a client shows it in: a name, a quantity, a price);
    other format characters within visible text (an emoji joined by U+200D, a right-to-left
    mark) are kept. The rule is marketplace.text's, which models and services share."""

    default_error_messages = {CONTROL_CHARACTERS_NOT_ALLOWED: CONTROL_CHARACTERS_DETAIL}

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if has_control_characters(value):
            self.fail(CONTROL_CHARACTERS_NOT_ALLOWED)
        if not self.allow_blank and shows_nothing(value):
            self.fail("blank")
        return value


# A time of day sent with a UTC offset or a Z (TimeOfDayField).
TIME_ZONE_NOT_ALLOWED = "time_zone_not_allowed"


class TimeOfDayField(serializers.TimeField):
    """A time of day at a service center (a vehicle's shift): local wall-clock time in
    TIME_ZONE, "07:30" or "07:30:00". DRF's field (Django's parse_time) drops a UTC offset
    or a `Z` without a word, so "10:00+05:00" was taken as 10:00 local time, not the time
    the client meant (13:00 in Shanghai): refused 400 `time_zone_not_allowed` instead."""

    default_error_messages = {
        TIME_ZONE_NOT_ALLOWED: "A time of day is the service center's local time, without a "
        "UTC offset or Z (for example 07:30)."
    }

    def to_internal_value(self, value):
        if _with_offset(value):
            self.fail(TIME_ZONE_NOT_ALLOWED)
        return super().to_internal_value(value)


def _with_offset(value) -> bool:
    """A time of day (or its ISO 8601 text) with a UTC offset or a Z."""
    try:
        told = value if isinstance(value, time) else time.fromisoformat(value)
    except (TypeError, ValueError):
        return False  # no ISO 8601 time: DRF's field answers it
    return told.tzinfo is not None
