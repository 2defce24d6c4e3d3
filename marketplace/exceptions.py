"""Domain errors: raised by services, turned into 4xx JSON by marketplace.api.exceptions."""

from typing import Any

# The members every problem answer has (marketplace.api.exceptions.problem); `extra` adds others.
PROBLEM_MEMBERS = frozenset({"type", "title", "status", "code", "detail", "errors"})


class DomainError(Exception):
    """A rule of the domain refused the request. `code` is stable; clients branch on it."""

    status_code = 400

    def __init__(
        self,
        code: str,
        detail: str,
        *,
        status_code: int | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        if status_code is not None:
            self.status_code = status_code
        self.extra = extra or {}
        if clash := PROBLEM_MEMBERS & self.extra.keys():
            raise ValueError(f"{sorted(clash)} would replace the problem's own members")


class ConflictError(DomainError):
    """The request is valid but conflicts with the current state (HTTP 409)."""

    status_code = 409


def violated_constraint(error: Exception) -> str | None:
    """The name of the constraint a database IntegrityError broke, if PostgreSQL gave one:
    services tell "taken" or "already there" apart from other failures by it."""
    return getattr(getattr(error.__cause__, "diag", None), "constraint_name", None)
