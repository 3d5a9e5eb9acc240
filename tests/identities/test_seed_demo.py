"""manage.py seed_demo: the demo cast, idempotently."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from identities import roles
from identities.audit import audit_verify_chain
from identities.models import AuditEvent, CatalogRole, Cluster, NamespaceOwnership, Team

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fast_password_hashing(settings: Any) -> None:
    # seed_demo hashes six passwords per run; the production hasher makes that seconds.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _seed(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("seed_demo", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_seed_demo_creates_the_demo_world_and_warns_it_is_demo_only(settings: Any) -> None:
    settings.DEBUG = True
    out, err = _seed()

    assert set(Team.objects.values_list("name", flat=True)) >= {"payments", "search"}
    cluster = Cluster.objects.get(name="aks-sandbox")
    assert cluster.emulated and cluster.workload_identity_enabled
    assert cluster.oidc_issuer_url.endswith("/")
    owners = dict(
        NamespaceOwnership.objects.filter(cluster=cluster).values_list("namespace", "team__name")
    )
    assert owners == {"payments": "payments", "payments-jobs": "payments", "search": "search"}
    assert CatalogRole.objects.count() == 31
    users = {u.username: u for u in get_user_model().objects.all()}
    for username in ("alice", "bob", "sam", "sara", "ada", "admin"):
        assert users[username].check_password("demo")
    assert roles.is_requester(users["alice"]) and roles.is_requester(users["bob"])
    assert roles.is_approver(users["sam"]) and roles.is_approver(users["sara"])
    assert roles.is_auditor(users["ada"]) and roles.is_admin(users["admin"])
    assert users["alice"].teams.get().name == "payments"
    assert users["bob"].teams.get().name == "search"
    assert "alice" in out and "demo" in err.lower() and "WARNING" in err


def test_seed_demo_is_idempotent(settings: Any) -> None:
    settings.DEBUG = True
    _seed()
    rows = AuditEvent.objects.count()
    _seed()
    assert AuditEvent.objects.count() == rows
    assert Cluster.objects.filter(name="aks-sandbox").count() == 1
    assert audit_verify_chain().ok


def test_seed_demo_keeps_a_registered_issuer_unless_told_otherwise(settings: Any) -> None:
    settings.DEBUG = True
    _seed("--oidc-issuer-url", "https://127.0.0.1:8443/oidc/0b1c/")
    _seed()
    assert (
        Cluster.objects.get(name="aks-sandbox").oidc_issuer_url
        == "https://127.0.0.1:8443/oidc/0b1c/"
    )


def test_seed_demo_refuses_to_run_with_debug_off(settings: Any) -> None:
    settings.DEBUG = False
    with pytest.raises(CommandError, match="--force"):
        _seed()
