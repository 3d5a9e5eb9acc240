"""Power granted in the Django admin is on the audit trail (red team: adding a user to the
approvers group in the admin left no row): role groups as user.role_granted / user.role_revoked,
everything else (created, superuser, staff, active, other groups, a password set) as one
user.account_changed row that never holds the password."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.test import Client

from identities import roles
from identities.models import AuditEvent

pytestmark = pytest.mark.django_db


def _change_form(user: Any, **overrides: Any) -> dict[str, Any]:
    form = {
        "username": user.username,
        "first_name": user.first_name,
        "last_name": user.last_name,
        "email": user.email,
        "is_active": "on",
        "groups": [group.pk for group in user.groups.all()],
        "user_permissions": [],
        "last_login_0": "",
        "last_login_1": "",
        "date_joined_0": "2026-01-01",
        "date_joined_1": "00:00:00",
    }
    form.update(overrides)
    return {key: value for key, value in form.items() if value is not None}


def test_granting_and_taking_a_role_and_superuser_in_the_admin_is_audited(
    requester: Any, admin_user: Any
) -> None:
    client = Client()
    client.force_login(admin_user)
    approvers = Group.objects.get(name=roles.APPROVERS)
    page = f"/admin/auth/user/{requester.pk}/change/"
    groups = [group.pk for group in requester.groups.all()]

    granted = client.post(
        page, _change_form(requester, groups=[*groups, approvers.pk], is_superuser="on")
    )
    assert granted.status_code == 302, granted.content.decode()[:2000]
    revoked = client.post(page, _change_form(requester, groups=groups))
    assert revoked.status_code == 302

    rows = list(
        AuditEvent.objects.filter(action__startswith="user.")
        .order_by("id")
        .values_list("action", "actor_label", "data")
    )
    assert [(action, actor) for action, actor, _ in rows] == [
        ("user.role_granted", "admin"),
        ("user.account_changed", "admin"),
        ("user.role_revoked", "admin"),
        ("user.account_changed", "admin"),
    ]
    assert rows[0][2]["role"] == roles.APPROVERS and rows[0][2]["user"] == "alice"
    assert rows[1][2]["changes"] == {"is_superuser": [False, True]}
    assert rows[3][2]["changes"] == {"is_superuser": [True, False]}
    requester.refresh_from_db()
    assert not requester.groups.filter(pk=approvers.pk).exists()


def test_a_password_set_in_the_admin_is_audited_without_the_password(
    requester: Any, admin_user: Any
) -> None:
    client = Client()
    client.force_login(admin_user)
    secret = "a-New-passw0rd-for-alice!"

    response = client.post(
        f"/admin/auth/user/{requester.pk}/password/",
        {"password1": secret, "password2": secret, "usable_password": "true"},
    )

    assert response.status_code == 302, response.content.decode()[:2000]
    event = AuditEvent.objects.get(action="user.account_changed")
    assert event.data["changes"] == {"password_set": True}
    assert secret not in str(event.data)
    requester.refresh_from_db()
    assert requester.password not in str(event.data)
