"""Web UI routes."""

from django.urls import path

from web import views

urlpatterns = [
    path("", views.home, name="home"),
    path("requests/", views.request_list, name="request_list"),
    path("requests/new/", views.request_new, name="request_new"),
    path("requests/new/check/", views.request_check, name="request_check"),
    path("requests/<int:pk>/", views.request_detail, name="request_detail"),
    path("requests/<int:pk>/progress/", views.request_progress, name="request_progress"),
    path("requests/<int:pk>/cancel/", views.request_cancel, name="request_cancel"),
    path("requests/<int:pk>/retry/", views.request_retry, name="request_retry"),
    path("requests/<int:pk>/verify/", views.request_verify, name="request_verify"),
    path("requests/<int:pk>/approve/", views.request_approve, name="request_approve"),
    path("requests/<int:pk>/reject/", views.request_reject, name="request_reject"),
    path("requests/<int:pk>/manifests.yaml", views.request_manifests, name="request_manifests"),
    path("approvals/", views.approval_queue_page, name="approval_queue"),
    path("audit/", views.audit_log, name="audit_log"),
    path("audit/export/", views.audit_export, name="audit_export"),
    path("audit/verify/", views.audit_chain_verify, name="audit_chain_verify"),
    path("audit/verify/progress/", views.audit_chain_progress, name="audit_chain_progress"),
    path("identities/", views.identity_list, name="identity_list"),
    path("identities/<int:pk>/", views.identity_detail, name="identity_detail"),
    path("identities/<int:pk>/repair/", views.identity_repair, name="identity_repair"),
    path(
        "identities/<int:pk>/decommission/",
        views.identity_decommission,
        name="identity_decommission",
    ),
    path(
        "identities/<int:pk>/service-accounts/",
        views.identity_add_service_account,
        name="identity_add_service_account",
    ),
    path("inbox/", views.notification_inbox, name="notification_inbox"),
    path("inbox/read/", views.notification_read, name="notification_read"),
    path("inbox/preferences/", views.notification_preferences, name="notification_preferences"),
    path("webhooks/", views.webhook_list, name="webhook_list"),
    path("webhooks/<int:pk>/", views.webhook_detail, name="webhook_detail"),
    path("webhooks/<int:pk>/rotate/", views.webhook_rotate, name="webhook_rotate"),
    path("webhooks/<int:pk>/toggle/", views.webhook_toggle, name="webhook_toggle"),
    path("webhooks/<int:pk>/delete/", views.webhook_delete, name="webhook_delete"),
    path(
        "webhooks/<int:pk>/deliveries/<int:delivery_pk>/redeliver/",
        views.webhook_redeliver_view,
        name="webhook_redeliver",
    ),
    path("tokens/", views.api_tokens, name="api_tokens"),
    path("tokens/<int:pk>/revoke/", views.api_token_revoke_view, name="api_token_revoke"),
]
