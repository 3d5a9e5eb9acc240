"""/api/v1/ routes. Every route here needs a row in tests/security/test_api_authorization.py."""

from __future__ import annotations

from django.urls import path, re_path

from api.views import (
    audit,
    base,
    catalog,
    handover,
    identities,
    machines,
    pipeline,
    requests,
    resources,
    reviews,
    tokens,
    webhooks,
)

app_name = "api"

urlpatterns = [
    path(
        "identity-requests/",
        requests.IdentityRequestCollectionView.as_view(),
        name="identity-request-list",
    ),
    path(
        "identity-requests/ensure/",
        pipeline.IdentityRequestEnsureView.as_view(),
        name="identity-request-ensure",
    ),
    path(
        "identity-requests/validate/",
        pipeline.IdentityRequestValidateView.as_view(),
        name="identity-request-validate",
    ),
    path(
        "identity-requests/<int:pk>/",
        requests.IdentityRequestDetailView.as_view(),
        name="identity-request-detail",
    ),
    path(
        "identity-requests/<int:pk>/cancel/",
        requests.IdentityRequestCancelView.as_view(),
        name="identity-request-cancel",
    ),
    path(
        "identity-requests/<int:pk>/approve/",
        requests.IdentityRequestApproveView.as_view(),
        name="identity-request-approve",
    ),
    path(
        "identity-requests/<int:pk>/reject/",
        requests.IdentityRequestRejectView.as_view(),
        name="identity-request-reject",
    ),
    path(
        "identity-requests/<int:pk>/send-back/",
        requests.IdentityRequestSendBackView.as_view(),
        name="identity-request-send-back",
    ),
    path(
        "identity-requests/<int:pk>/resubmit/",
        requests.IdentityRequestResubmitView.as_view(),
        name="identity-request-resubmit",
    ),
    path(
        "identity-requests/<int:pk>/retry/",
        requests.IdentityRequestRetryView.as_view(),
        name="identity-request-retry",
    ),
    path(
        "identity-requests/<int:pk>/audit/",
        requests.IdentityRequestAuditView.as_view(),
        name="identity-request-audit",
    ),
    path(
        "identity-requests/<int:pk>/steps/",
        requests.IdentityRequestStepsView.as_view(),
        name="identity-request-steps",
    ),
    path(
        "identity-requests/<int:pk>/manifests/",
        handover.ManifestsView.as_view(),
        name="identity-request-manifests",
    ),
    path(
        "identity-requests/<int:pk>/handover/",
        handover.HandoverView.as_view(),
        name="identity-request-handover",
    ),
    path(
        "identity-requests/<int:pk>/verify/",
        handover.VerifyView.as_view(),
        name="identity-request-verify",
    ),
    path(
        "identity-requests/<int:pk>/verifications/",
        handover.VerificationsView.as_view(),
        name="identity-request-verifications",
    ),
    path("resources/", resources.ResourceListView.as_view(), name="resource-list"),
    path("identities/", identities.IdentityListView.as_view(), name="identity-list"),
    path("identities/<int:pk>/", identities.IdentityDetailView.as_view(), name="identity-detail"),
    path(
        "identities/<int:pk>/decommission/",
        identities.IdentityDecommissionView.as_view(),
        name="identity-decommission",
    ),
    path(
        "identities/<int:pk>/changes/",
        identities.IdentityChangeView.as_view(),
        name="identity-changes",
    ),
    path(
        "identities/<int:pk>/repair/",
        identities.IdentityRepairView.as_view(),
        name="identity-repair",
    ),
    path("access-reviews/", reviews.CampaignCollectionView.as_view(), name="access-review-list"),
    path(
        "access-reviews/<int:pk>/",
        reviews.CampaignDetailView.as_view(),
        name="access-review-detail",
    ),
    path(
        "access-reviews/<int:pk>/close/",
        reviews.CampaignCloseView.as_view(),
        name="access-review-close",
    ),
    path(
        "access-reviews/<int:pk>/items/",
        reviews.CampaignItemsView.as_view(),
        name="access-review-items",
    ),
    path(
        "access-reviews/<int:pk>/evidence/",
        reviews.EvidenceView.as_view(),
        name="access-review-evidence",
    ),
    path(
        "access-reviews/items/<int:pk>/attest/",
        reviews.ItemAttestView.as_view(),
        name="access-review-item-attest",
    ),
    path(
        "ownership-transfers/",
        reviews.TransferCollectionView.as_view(),
        name="ownership-transfer-list",
    ),
    path(
        "ownership-transfers/<int:pk>/",
        reviews.TransferDetailView.as_view(),
        name="ownership-transfer-detail",
    ),
    path(
        "ownership-transfers/<int:pk>/consent/",
        reviews.TransferConsentView.as_view(),
        name="ownership-transfer-consent",
    ),
    path(
        "ownership-transfers/<int:pk>/approve/",
        reviews.TransferApproveView.as_view(),
        name="ownership-transfer-approve",
    ),
    path(
        "ownership-transfers/<int:pk>/reject/",
        reviews.TransferRejectView.as_view(),
        name="ownership-transfer-reject",
    ),
    path(
        "ownership-transfers/<int:pk>/cancel/",
        reviews.TransferCancelView.as_view(),
        name="ownership-transfer-cancel",
    ),
    path("clusters/", catalog.ClusterListView.as_view(), name="cluster-list"),
    path(
        "clusters/<str:name>/namespaces/",
        catalog.ClusterNamespacesView.as_view(),
        name="cluster-namespaces",
    ),
    path("roles/", catalog.RoleListView.as_view(), name="role-list"),
    path("audit-events/", audit.AuditEventListView.as_view(), name="audit-event-list"),
    path("audit-events/export/", audit.AuditExportView.as_view(), name="audit-event-export"),
    path("tokens/", tokens.TokenCollectionView.as_view(), name="token-list"),
    path("tokens/<int:pk>/revoke/", tokens.TokenRevokeView.as_view(), name="token-revoke"),
    path("me/", tokens.MeView.as_view(), name="me"),
    path("trust-rules/", machines.TrustRuleCollectionView.as_view(), name="trust-rule-list"),
    path(
        "trust-rules/<int:pk>/disable/",
        machines.TrustRuleDisableView.as_view(),
        name="trust-rule-disable",
    ),
    path(
        "service-tokens/", machines.ServiceTokenCollectionView.as_view(), name="service-token-list"
    ),
    path(
        "service-tokens/<int:pk>/revoke/",
        machines.ServiceTokenRevokeView.as_view(),
        name="service-token-revoke",
    ),
    path("webhooks/", webhooks.WebhookCollectionView.as_view(), name="webhook-list"),
    path("webhooks/<int:pk>/", webhooks.WebhookDetailView.as_view(), name="webhook-detail"),
    path(
        "webhooks/<int:pk>/rotate-secret/",
        webhooks.WebhookRotateView.as_view(),
        name="webhook-rotate-secret",
    ),
    path(
        "webhooks/<int:pk>/deliveries/",
        webhooks.WebhookDeliveriesView.as_view(),
        name="webhook-deliveries",
    ),
    path(
        "webhooks/<int:pk>/deliveries/<int:delivery_pk>/redeliver/",
        webhooks.WebhookRedeliverView.as_view(),
        name="webhook-redeliver",
    ),
    # Last: whatever matched nothing above is a problem-details 404, not the HTML page.
    re_path(r"^", base.not_found, name="not-found"),
]
