"""The problem+json body of every error the project answers (RFC 9457 problem details with a
`code` member). Free of Django and DRF, so the gunicorn workers (marketplace.gunicorn_workers),
loaded before Django is set up, write the same body as the API's exception handler."""

import re
from http import HTTPStatus
from typing import Any

PROBLEM_CONTENT_TYPE = "application/problem+json"
_SURROGATE = re.compile("[\ud800-\udfff]")


def encodable(text: str) -> str:
    """An error may repeat what the client sent (`"…" is not a valid choice.`), and JSON
    can carry an unpaired surrogate (`"\\ud800"`) that UTF-8 cannot encode: the answer
    could not be written, a 500. Each one is repeated as U+FFFD, the replacement character."""
    return _SURROGATE.sub("\ufffd", text)


def problem(status_code: int, code: str, detail: str, **members: Any) -> dict[str, Any]:
    return {
        "type": "about:blank",
        "title": HTTPStatus(status_code).phrase,
        "status": status_code,
        "code": code,
        "detail": encodable(str(detail)),
        **members,
    }
