"""Web UI routes."""

from django.urls import path

from web import views
from web.views import reviews

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
    path("requests/<int:pk>/send-back/", views.request_send_back, name="request_send_back"),
    path("requests/<int:pk>/resubmit/", views.request_resubmit, name="request_resubmit"),
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
    path("identities/<int:pk>/changes/new/", views.identity_change, name="identity_change"),
    path(
        "identities/<int:pk>/service-accounts/",
        views.identity_add_service_account,
        name="identity_add_service_account",
    ),
    path("identities/<int:pk>/transfer/", reviews.identity_transfer, name="identity_transfer"),
    path("access-reviews/", reviews.review_list, name="review_list"),
    path("access-reviews/<int:pk>/", reviews.review_detail, name="review_detail"),
    path("access-reviews/<int:pk>/close/", reviews.review_close, name="review_close"),
    path("access-reviews/<int:pk>/evidence/", reviews.review_evidence, name="review_evidence"),
    path("access-reviews/items/<int:pk>/attest/", reviews.review_attest, name="review_attest"),
    path("transfers/", reviews.transfer_list, name="transfer_list"),
    path("transfers/<int:pk>/consent/", reviews.transfer_consent, name="transfer_consent"),
    path("transfers/<int:pk>/approve/", reviews.transfer_approve, name="transfer_approve"),
    path("transfers/<int:pk>/reject/", reviews.transfer_reject, name="transfer_reject"),
    path("transfers/<int:pk>/cancel/", reviews.transfer_cancel, name="transfer_cancel"),
    path("tokens/", views.api_tokens, name="api_tokens"),
    path("tokens/<int:pk>/revoke/", views.api_token_revoke_view, name="api_token_revoke"),
    path("pipelines/", views.pipelines, name="pipelines"),
    path("pipelines/rules/", views.trust_rule_new, name="trust_rule_new"),
    path(
        "pipelines/rules/<int:pk>/disable/",
        views.trust_rule_disable_view,
        name="trust_rule_disable",
    ),
    path("pipelines/tokens/", views.service_token_new, name="service_token_new"),
    path(
        "pipelines/tokens/<int:pk>/revoke/",
        views.service_token_revoke_view,
        name="service_token_revoke",
    ),
]
