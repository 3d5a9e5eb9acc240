"""Who is who: portal roles are Django auth Groups, team membership is `TeamMembership`.

- requesters: may file requests for the teams they belong to;
- approvers: the security team; approve or reject, never their own requests;
- auditors: read-only, everywhere;
- admins: manage clusters, namespace ownership, the role catalog and teams (superusers count).

`groups_ensure()` takes the model classes so the data migration can pass historical models.
"""

from __future__ import annotations

from typing import Any

REQUESTERS = "requesters"
APPROVERS = "approvers"
AUDITORS = "auditors"
ADMINS = "admins"
ROLE_GROUPS = (REQUESTERS, APPROVERS, AUDITORS, ADMINS)

APPROVE_PERMISSION = "approve_identityrequest"

_VIEWABLE = (
    "team",
    "teammembership",
    "cluster",
    "namespaceownership",
    "catalogrole",
    "identityrequest",
    "requestedrole",
    "approval",
    "identity",
    "federatedcredential",
    "roleassignment",
    "auditevent",
)
_ADMIN_MANAGED = ("team", "teammembership", "cluster", "namespaceownership", "catalogrole")

# (model, codename) pairs each group gets, all in the `identities` app.
GROUP_PERMISSIONS: dict[str, list[tuple[str, str]]] = {
    REQUESTERS: [
        ("identityrequest", "add_identityrequest"),
        ("identityrequest", "view_identityrequest"),
        ("identity", "view_identity"),
        ("cluster", "view_cluster"),
        ("catalogrole", "view_catalogrole"),
        ("team", "view_team"),
    ],
    APPROVERS: [
        *[(model, f"view_{model}") for model in _VIEWABLE],
        ("identityrequest", APPROVE_PERMISSION),
    ],
    AUDITORS: [(model, f"view_{model}") for model in _VIEWABLE],
    ADMINS: [
        *[(model, f"view_{model}") for model in _VIEWABLE],
        *[
            (model, f"{action}_{model}")
            for model in _ADMIN_MANAGED
            for action in ("add", "change", "delete")
        ],
    ],
}

_CUSTOM_PERMISSION_NAMES = {APPROVE_PERMISSION: "Can approve or reject identity requests"}


def groups_ensure(group_model: Any, permission_model: Any, content_type_model: Any) -> None:
    """Create the four groups and give them their permissions (idempotent).

    Permissions are normally created after migrate; creating the rows here (same content type and
    codename) lets a fresh database have working groups straight after its migrations.
    """
    for group_name, perms in GROUP_PERMISSIONS.items():
        group, _ = group_model.objects.get_or_create(name=group_name)
        for model, codename in perms:
            content_type, _ = content_type_model.objects.get_or_create(
                app_label="identities", model=model
            )
            action, _, _ = codename.partition("_")
            default_name = _CUSTOM_PERMISSION_NAMES.get(
                codename, f"Can {action} {model.replace('_', ' ')}"
            )
            permission, _ = permission_model.objects.get_or_create(
                content_type=content_type, codename=codename, defaults={"name": default_name}
            )
            group.permissions.add(permission)


def _group_names(user: Any) -> frozenset[str]:
    if user is None or not getattr(user, "is_authenticated", False) or not user.is_active:
        return frozenset()
    cached = getattr(user, "_portal_group_names", None)
    if cached is None:
        # Cached on the user object: one query per request however many checks a view makes.
        cached = frozenset(user.groups.values_list("name", flat=True))
        user._portal_group_names = cached
    return cached


def forget_roles(user: Any) -> None:
    """Drop the cached group names (after changing a user's groups)."""
    if hasattr(user, "_portal_group_names"):
        del user._portal_group_names


def is_requester(user: Any) -> bool:
    return REQUESTERS in _group_names(user)


def is_approver(user: Any) -> bool:
    return APPROVERS in _group_names(user)


def is_auditor(user: Any) -> bool:
    return AUDITORS in _group_names(user)


def is_admin(user: Any) -> bool:
    if user is not None and getattr(user, "is_superuser", False) and user.is_active:
        return True
    return ADMINS in _group_names(user)


def sees_everything(user: Any) -> bool:
    """Approvers, auditors and admins see every team's requests, identities and audit events."""
    return is_approver(user) or is_auditor(user) or is_admin(user)
