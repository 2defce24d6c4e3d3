"""The OpenAPI schema's view of our conventions (REST_FRAMEWORK["DEFAULT_SCHEMA_CLASS"])."""

from typing import Any

from drf_spectacular import openapi
from drf_spectacular.plumbing import get_view_model
from rest_framework.schemas.utils import get_pk_description

from marketplace.api.routers import ID_PATTERN

_DIGITS = {"type": "string", "pattern": f"^{ID_PATTERN}$"}


class AutoSchema(openapi.AutoSchema):
    def _resolve_path_parameters(self, variables: list[str]) -> list[dict[str, Any]]:
        """An id in a path is an integer, whether a `<int:…>` converter or our router's
        digits-only pattern takes it: drf-spectacular calls a pattern a string, and does
        not describe the object's id (`{id}`) as it does for DRF's default pattern."""
        parameters = super()._resolve_path_parameters(variables)
        model = get_view_model(self.view, emit_warnings=False)
        for parameter in parameters:
            if parameter["schema"] != _DIGITS:
                continue
            parameter["schema"] = {"type": "integer"}
            if parameter["name"] == "id" and model is not None:
                parameter["description"] = get_pk_description(model, model._meta.pk)
        return parameters
