"""The schema (`/api/schema/`) and its browsable docs (`/api/docs/`), errors included."""

from typing import ClassVar

from django.http import HttpResponse
from django.utils import translation
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response


class ProblemErrors:
    """For a view whose answer is not JSON (the schema's YAML, the docs' HTML): its errors
    (a 405, a 406, a 401 for a bad token) are problem+json, as every error under /api/ is,
    not written by the view's own renderer."""

    def finalize_response(self, request, response, *args, **kwargs):
        if isinstance(response, Response) and response.status_code >= 400:
            # finalize_response hands the request's renderer to the response
            request.accepted_renderer = JSONRenderer()
            request.accepted_media_type = JSONRenderer.media_type
        return super().finalize_response(request, response, *args, **kwargs)


class SchemaView(ProblemErrors, SpectacularAPIView):
    """The schema, built once per process for each format and language it is served in: it
    changes only with the code, and building it took 0.9–1.5 s of CPU on every request.
    Only a plain request is kept (no `lang` or `version` asked, no media type parameter
    such as `indent`), so what is kept is bounded by the formats and the LANGUAGES the
    locale middleware picks from; any other is built as before."""

    built: ClassVar[dict[tuple[str, str], tuple[bytes, dict[str, str]]]] = {}

    def _get_schema_response(self, request):
        media_type = request.accepted_media_type
        if request.GET.keys() - {"format"} or media_type != request.accepted_renderer.media_type:
            return super()._get_schema_response(request)
        key = (media_type, translation.get_language())
        if key not in self.built:
            response = super()._get_schema_response(request)
            response.accepted_renderer = request.accepted_renderer
            response.accepted_media_type = media_type
            response.renderer_context = self.get_renderer_context()
            response.render()
            headers = {name: response[name] for name in ("Content-Type", "Content-Disposition")}
            self.built[key] = (response.content, headers)
        content, headers = self.built[key]
        return HttpResponse(content, headers=headers)


class DocsView(ProblemErrors, SpectacularSwaggerView):
    pass
