from django.conf import settings
from django.conf.urls.static import static
from django.contrib import admin
from django.urls import include, path

from marketplace.api.docs import DocsView, SchemaView
from marketplace.health import HealthView

api_v1 = [
    path("", include("marketplace.accounts.api.urls")),
    path("", include("logistics.api.urls")),
    path("", include("listings.api.urls")),
    path("", include("orders.api.urls")),
]

urlpatterns = [
    path("api/v1/", include(api_v1)),
    path("api/schema/", SchemaView.as_view(), name="schema"),
    path("api/docs/", DocsView.as_view(url_name="schema"), name="docs"),
    path("health/", HealthView.as_view(), name="health"),
    path("admin/", admin.site.urls),
]

if settings.DEBUG:
    # Development only. In production the reverse proxy serves MEDIA_ROOT (a volume shared
    # with the web and worker containers) at MEDIA_URL; Django never streams uploads there.
    urlpatterns += static(settings.MEDIA_URL, document_root=settings.MEDIA_ROOT)

handler400 = "marketplace.api.exceptions.bad_request_view"
handler403 = "marketplace.api.exceptions.permission_denied_view"
handler404 = "marketplace.api.exceptions.not_found_view"
handler500 = "marketplace.api.exceptions.server_error_view"
