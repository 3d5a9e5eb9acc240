"""Process-level bookkeeping for the portal itself: worker heartbeats, API tokens and the
idempotency records of the REST API, and single sign-on account links."""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.db import models
from django.utils import timezone


class WorkerHeartbeat(models.Model):
    """The last time each worker host ran the periodic heartbeat task (shown on /readyz)."""

    hostname = models.CharField(max_length=255, unique=True)
    seen_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.hostname} @ {self.seen_at:%Y-%m-%d %H:%M:%S}"


class ApiToken(models.Model):
    """A bearer token a pipeline uses instead of a session. Only the SHA-256 of the secret is
    stored; `prefix` (the first characters, not secret) identifies it in lists and logs.
    Created and revoked only through `accounts.tokens`."""

    SCOPES = ("read", "request", "approve")

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=100, help_text="What the token is for, e.g. the pipeline.")
    prefix = models.CharField(max_length=16, db_index=True)
    hashed_secret = models.CharField(max_length=64, unique=True)
    scopes = models.JSONField(default=list)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    expires_at = models.DateTimeField(null=True, blank=True, help_text="Empty: never expires.")
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    # Who minted it, when that is not `user`: a team's service token belongs to the team's
    # service principal (its `user`) and is minted by one of the team's people.
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    def is_expired(self, now: datetime | None = None) -> bool:
        return self.expires_at is not None and self.expires_at <= (now or timezone.now())

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None and not self.is_expired()


class IdempotencyStatus(models.TextChoices):
    IN_PROGRESS = "in_progress"
    DONE = "done"


class IdempotencyRecord(models.Model):
    """The first response to a POST carrying an `Idempotency-Key`, kept so a retry with the same
    key and body gets it again instead of acting twice. Keys are per user; rows expire."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    fingerprint = models.CharField(max_length=64, help_text="SHA-256 of method, path and body.")
    status = models.CharField(
        max_length=16, choices=IdempotencyStatus.choices, default=IdempotencyStatus.IN_PROGRESS
    )
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.JSONField(null=True, blank=True)
    response_headers = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "key"], name="idempotency_user_key_unique"),
            models.CheckConstraint(
                condition=models.Q(status__in=IdempotencyStatus.values),
                name="idempotency_status_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.key} ({self.status})"


class SsoAccount(models.Model):
    """Links a portal user to one Entra ID user (tenant id + object id, the claims Microsoft
    documents as the stable key; usernames and e-mail addresses can change). Written only by
    `accounts.sso` at sign-in."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="sso_account"
    )
    tenant_id = models.CharField(max_length=64)
    object_id = models.CharField(max_length=64)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    last_sign_in_at = models.DateTimeField(null=True, blank=True)
    # The group object ids of the last sign-in, as Entra sent them (for audit and support).
    groups = models.JSONField(default=list, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant_id", "object_id"], name="sso_account_unique")
        ]

    def __str__(self) -> str:
        return f"{self.user} <{self.tenant_id}/{self.object_id}>"


class ServicePrincipal(models.Model):
    """A non-human principal of a team (`svc:payments/deploy-pipeline`): what a pipeline acts
    as when it presents a trusted OIDC token or a team service token. It is backed by a user
    row named after it (no password, a member of the team and of the requesters group), so
    every existing check, the audit trail and the request page name it like anyone else.
    Created and disabled only through `accounts.machines`."""

    team = models.ForeignKey(
        "identities.Team", on_delete=models.PROTECT, related_name="service_principals"
    )
    name = models.CharField(max_length=63, help_text="A DNS label, e.g. deploy-pipeline.")
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="service_principal"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )

    class Meta:
        ordering = ["team__name", "name"]
        constraints = [
            models.UniqueConstraint(fields=["team", "name"], name="serviceprincipal_unique")
        ]

    def __str__(self) -> str:
        return self.label

    @property
    def label(self) -> str:
        return f"svc:{self.team.name}/{self.name}"


class TrustRule(models.Model):
    """A team trusts tokens of one OIDC issuer (a CI system) for one audience whose subject
    and/or claims match, and lets them act as one of its service principals with `scopes`.
    Created and disabled only through `accounts.machines`; checked by `accounts.oidc`."""

    service_principal = models.ForeignKey(
        ServicePrincipal, on_delete=models.PROTECT, related_name="trust_rules"
    )
    name = models.CharField(max_length=100, help_text="What the rule is for.")
    issuer = models.CharField(max_length=300, db_index=True, help_text="Compared byte for byte.")
    audience = models.CharField(max_length=300)
    subject = models.CharField(max_length=300, blank=True, help_text="The exact `sub`.")
    subject_pattern = models.CharField(
        max_length=300, blank=True, help_text="A `sub` pattern where * matches any characters."
    )
    claims = models.JSONField(default=dict, blank=True, help_text="Exact claim values.")
    scopes = models.JSONField(default=list)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    last_used_at = models.DateTimeField(null=True, blank=True)
    disabled_at = models.DateTimeField(null=True, blank=True)
    disabled_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.name} → {self.service_principal_id}"

    @property
    def is_active(self) -> bool:
        return self.disabled_at is None
