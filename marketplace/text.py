"""One line of text that people read (a name, a title): the rule the API's TextLineField,
the models' fields (their validator, so any form of them, the admin's too) and the services
share, so each path refuses the same text with the same code."""

import unicodedata

from django.core.exceptions import ValidationError

from marketplace.exceptions import DomainError

CONTROL_CHARACTERS_NOT_ALLOWED = "control_characters_not_allowed"
CONTROL_CHARACTERS_DETAIL = (
    "Control characters (new lines, tabs, text direction overrides) are not allowed."
)
BLANK = "blank"
BLANK_DETAIL = "This field may not be blank."

# Embeddings and overrides (U+202A to U+202E) and isolates (U+2066 to U+2069), of the
# Unicode bidirectional algorithm; its marks (U+200E, U+200F, U+061C) turn nothing around.
DIRECTION_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def has_control_characters(text: str) -> bool:
    """A control character (a new line, a tab, a terminal escape: they break the lines of a
    message, a driver's stop or a load list) or a text direction override, embedding or
    isolate (it turns the text after it around, to the end of the line a client shows it
    in). Other format characters within visible text (an emoji joined by U+200D, a
    right-to-left mark) are fine."""
    return any(unicodedata.category(char) == "Cc" or char in DIRECTION_CONTROLS for char in text)


def shows_nothing(text: str) -> bool:
    """Only spaces and format characters (zero-width spaces, a byte-order mark), which
    trimming keeps: nothing a reader sees."""
    return all(char.isspace() or unicodedata.category(char) == "Cf" for char in text)


def validate_text_line(value: str) -> None:
    """The rule as a Django validator, for a model field that may not be blank: a form of
    the model shows its error on the field, with the API's code."""
    if has_control_characters(value):
        raise ValidationError(CONTROL_CHARACTERS_DETAIL, code=CONTROL_CHARACTERS_NOT_ALLOWED)
    if shows_nothing(value):
        raise ValidationError(BLANK_DETAIL, code=BLANK)


def check_text_line(value: str, *, field: str) -> None:
    """The rule for services: a DomainError with the API's code naming `field` (400, its
    `errors` naming the field, as the API's own field error does)."""
    try:
        validate_text_line(value)
    except ValidationError as error:
        raise DomainError(error.code, error.message, extra={"field": field}) from None
