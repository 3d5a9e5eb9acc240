"""What the authorization matrices act on: the cast of actors and team A's objects in each state,
made on first use (every test case gets a fresh world)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from functools import cached_property
from typing import Any

from django.utils import timezone

from accounts.machines import service_token_create, trust_rule_create
from accounts.models import ApiToken, TrustRule
from accounts.tokens import token_generate, token_hash
from identities.models import (
    AccessReviewCampaign,
    AccessReviewItem,
    Identity,
    IdentityRequest,
    Notification,
    OwnershipTransfer,
    Team,
    WebhookDelivery,
    WebhookEndpoint,
)
from identities.policy import RoleDraft
from identities.services import (
    access_review_open,
    identity_request_change_create,
    ownership_transfer_consent,
    ownership_transfer_request,
    webhook_endpoint_create,
)
from tests.api.conftest import approve, make_failed, make_ready
from tests.support.people import STORAGE_SCOPE

SESSION_ACTORS = ("anonymous", "requester_a", "requester_b", "approver", "auditor", "admin")

# App names of team A's objects: distinctive, so a page leaking one is easy to spot.
PENDING_APP, READY_APP, FAILED_APP = "zqpending", "zqready", "zqfailed"
TEAM_A_APPS = (PENDING_APP, READY_APP, FAILED_APP)


class World:
    """The actors (requester A of team payments, requester B of team search, an approver, an
    auditor, an admin) and team A's requests: pending, ready (with its identity), failed."""

    def __init__(self, fixture: Callable[[str], Any]) -> None:
        self.fixture = fixture
        self.users = {
            "requester_a": fixture("requester"),
            "requester_b": fixture("outsider"),
            "approver": fixture("approver"),
            "auditor": fixture("auditor"),
            "admin": fixture("admin_user"),
        }
        fixture("cluster")
        fixture("catalog")

    def _file(self, name: str) -> IdentityRequest:
        return self.fixture("file_request")(service_account=name, app_name=name)

    @cached_property
    def pending(self) -> IdentityRequest:
        return self._file(PENDING_APP)

    @cached_property
    def ready(self) -> IdentityRequest:
        return make_ready(approve(self._file(READY_APP), self.users["approver"]))

    @cached_property
    def failed(self) -> IdentityRequest:
        return make_failed(approve(self._file(FAILED_APP), self.users["approver"]))

    @cached_property
    def failed_change(self) -> IdentityRequest:
        """A change of the ready identity's roles (one role added), approved, then failed."""
        change = identity_request_change_create(
            requester=self.users["requester_a"],
            identity=self.identity,
            add=(RoleDraft("Storage Blob Data Reader", STORAGE_SCOPE),),
            remove=(),
            justification="Checkout also reads the product images.",
        )
        return make_failed(approve(change, self.users["approver"]))

    @property
    def identity(self) -> Identity:
        identity = self.ready.identity
        assert identity is not None
        return identity

    @cached_property
    def campaign(self) -> AccessReviewCampaign:
        """An access review holding only team A's ready identity."""
        self.identity  # noqa: B018 - the campaign snapshots it
        return access_review_open(
            actor=self.users["approver"],
            name="matrix review",
            due_at=timezone.now() + timedelta(days=7),
        )

    @property
    def review_item(self) -> AccessReviewItem:
        return self.campaign.items.get(identity=self.identity)

    @cached_property
    def transfer(self) -> OwnershipTransfer:
        """Team A asks to hand its ready identity to team B (search)."""
        return ownership_transfer_request(
            requester=self.users["requester_a"],
            identity=self.identity,
            to_team=Team.objects.get(name="search"),
            justification="Search runs it now.",
        )

    @cached_property
    def consented_transfer(self) -> OwnershipTransfer:
        return ownership_transfer_consent(transfer=self.transfer, actor=self.users["requester_b"])

    @cached_property
    def own_token(self) -> ApiToken:
        """A token of requester A (what the revoke rows revoke)."""
        token_of(self.users["requester_a"], ["read"])
        return ApiToken.objects.filter(user=self.users["requester_a"]).latest("id")

    @cached_property
    def own_webhook(self) -> WebhookEndpoint:
        """A webhook endpoint of team A, registered by requester A."""
        endpoint, _ = webhook_endpoint_create(
            actor=self.users["requester_a"],
            team=Team.objects.get(name="payments"),
            url="https://hooks.example.com/payments",
            events=["request_filed"],
        )
        return endpoint

    @cached_property
    def own_webhook_delivery(self) -> WebhookDelivery:
        """A failed attempt in team A's endpoint's delivery log (what redeliver resends)."""
        notification = Notification.objects.create(
            key=f"matrix:webhook:{self.own_webhook.pk}",
            event="request_filed",
            channel="webhook",
            endpoint=self.own_webhook,
            status="failed",
        )
        return WebhookDelivery.objects.create(
            endpoint=self.own_webhook, notification=notification, status_code=503
        )

    @cached_property
    def trust_rule(self) -> TrustRule:
        """A trust rule of team A (what the disable rows disable)."""
        return trust_rule_create(
            actor=self.users["requester_a"],
            team=Team.objects.get(name="payments"),
            **trust_rule_body(),
        )

    @cached_property
    def service_token(self) -> ApiToken:
        """A service token of team A (what the revoke rows revoke)."""
        token, _ = service_token_create(
            actor=self.users["requester_a"],
            team=Team.objects.get(name="payments"),
            service_principal="deploy",
            name="matrix",
            scopes=["read"],
            expires_at=timezone.now() + timedelta(days=1),
        )
        return token


def trust_rule_body() -> dict[str, Any]:
    """A rule for team A's pipeline on GitHub Actions (the service's keyword arguments)."""
    return {
        "service_principal": "deploy",
        "name": "payments main",
        "issuer": "https://token.actions.githubusercontent.com",
        "audience": "api://workload-identity-portal",
        "subject": "repo:contoso/payments:environment:production",
        "scopes": ["read", "request"],
    }


def token_of(user: Any, scopes: list[str], *, expired: bool = False, revoked: bool = False) -> str:
    """A token row written directly: any scopes (as if the user's roles changed after minting)."""
    raw = token_generate()
    now = timezone.now()
    ApiToken.objects.create(
        user=user,
        name="matrix",
        prefix=raw[:12],
        hashed_secret=token_hash(raw),
        scopes=scopes,
        expires_at=now - timedelta(seconds=1) if expired else now + timedelta(days=1),
        revoked_at=now if revoked else None,
    )
    return raw


def team_a(**overrides: int) -> dict[str, int]:
    """Team A's objects: visible to team A and the see-everything roles; requester B gets the
    404 a missing object gets. `anonymous` is filled in by each matrix (401 API, 302 UI)."""
    base = {"requester_a": 200, "requester_b": 404, "approver": 200, "auditor": 200, "admin": 200}
    return {**base, **overrides}
