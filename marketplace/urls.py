from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from marketplace.health import HealthView

api_v1 = [
    path("", include("marketplace.accounts.api.urls")),
    path("", include("logistics.api.urls")),
    path("", include("listings.api.urls")),
]

urlpatterns = [
    path("api/v1/", include(api_v1)),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("health/", HealthView.as_view(), name="health"),
    path("admin/", admin.site.urls),
]

handler400 = "marketplace.api.exceptions.bad_request_view"
handler403 = "marketplace.api.exceptions.permission_denied_view"
handler404 = "marketplace.api.exceptions.not_found_view"
handler500 = "marketplace.api.exceptions.server_error_view"
