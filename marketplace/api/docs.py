"""The schema (`/api/schema/`) and its browsable docs (`/api/docs/`), errors included."""

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
    pass


class DocsView(ProblemErrors, SpectacularSwaggerView):
    pass
