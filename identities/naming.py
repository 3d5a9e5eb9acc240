"""Deterministic Azure names for what the portal creates, always within Azure's rules.

A retry or a second worker derives the same names from the same request, which is what makes
provisioning idempotent (DESIGN.md, "Level-triggered, idempotent reconcile").
"""

from __future__ import annotations

import hashlib
import re

from identities.validators import FIC_NAME_MAX, UAMI_NAME_MAX, is_fic_name, is_uami_name

AUDIENCE = "api://AzureADTokenExchange"
SUBJECT_PREFIX = "system:serviceaccount:"

_HASH_LEN = 8
_NOT_ALLOWED = re.compile(r"[^A-Za-z0-9_-]+")


def fic_subject(namespace: str, service_account: str) -> str:
    """The `sub` claim of a Kubernetes ServiceAccount token."""
    return f"{SUBJECT_PREFIX}{namespace}:{service_account}"


def uami_name(*, cluster: str, namespace: str, app_name: str, service_account: str) -> str:
    """`{cluster}-{namespace}-{app}` (plus `-{service account}` when it differs from the app).

    3-128 characters of `[A-Za-z0-9_-]`, starting alphanumeric (AZURE-FACTS §2.5).
    """
    parts = [cluster, namespace, app_name]
    if service_account != app_name:
        parts.append(service_account)
    name = _azure_name(parts, max_length=UAMI_NAME_MAX)
    assert is_uami_name(name), name  # noqa: S101 - an internal invariant, covered by property tests
    return name


def fic_name(*, cluster: str, namespace: str, service_account: str) -> str:
    """`{cluster}-{namespace}-{service account}`: unique per identity because one identity has at
    most one credential per (cluster issuer, subject).

    3-120 characters of `[A-Za-z0-9_-]`, starting alphanumeric (AZURE-FACTS §2.4).
    """
    name = _azure_name([cluster, namespace, service_account], max_length=FIC_NAME_MAX)
    assert is_fic_name(name), name  # noqa: S101 - an internal invariant, covered by property tests
    return name


def _azure_name(parts: list[str], *, max_length: int) -> str:
    """Join the parts with '-', keeping only Azure-safe characters.

    Whenever anything had to change (a character replaced, the result too short or too long) a
    short hash of the original parts is appended, so two different inputs that sanitize alike
    still get different names, and the same input always gets the same name.
    """
    raw = "-".join(parts)
    cleaned = _NOT_ALLOWED.sub("-", raw).strip("-_")
    if cleaned == raw and 3 <= len(cleaned) <= max_length:
        return cleaned
    digest = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:_HASH_LEN]
    prefix = cleaned[: max_length - _HASH_LEN - 1].rstrip("-_")
    return f"{prefix}-{digest}" if prefix else digest
