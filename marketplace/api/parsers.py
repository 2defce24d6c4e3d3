"""Request parsers: DRF's, with the bodies it lets through as a 500 answered as a 400."""

from rest_framework import parsers
from rest_framework.exceptions import ParseError


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser. A document nested deeper than Python's parser can follow (about
    a thousand `[`) raises RecursionError, which DRF does not catch; here it is a
    `parse_error` like any other unreadable body."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON parse error - the document is nested too deeply.") from None
