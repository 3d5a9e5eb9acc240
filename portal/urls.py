"""Top-level URL map."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from accounts import login_throttle, sso
from portal import health, metrics

# The admin's sign-in is throttled like the portal's (its form, and 429 via the route below).
admin.site.login_form = login_throttle.AdminLoginForm

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("healthz/workers", health.workers, name="healthz-workers"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics.metrics, name="metrics"),
    path("admin/login/", login_throttle.with_throttle_status(admin.site.login)),
    path("admin/", admin.site.urls),
    path("api/v1/", include("api.urls", namespace="api")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # The split view serves Swagger UI's start-up script as a file of its own: no inline script.
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="api-schema"), name="api-docs"),
    path(
        "accounts/login/",
        login_throttle.with_throttle_status(
            auth_views.LoginView.as_view(authentication_form=login_throttle.LoginForm)
        ),
        name="login",
    ),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/sso/start/", sso.SignInStart.as_view(), name="sso-start"),
    path("accounts/sso/callback/", sso.SignInCallback.as_view(), name="sso-callback"),
    path("", include("web.urls")),
]
