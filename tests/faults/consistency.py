"""Is Azure (the emulator's state) exactly what the database says, and nothing more?

After faults the database may be right and Azure wrong (a duplicate made by a retry, an orphan
left by a crash between the PUT and its record), or the other way round. These checks read the
emulator's resources, its request log and the database, and return every disagreement as one
line, so a failing test says all that is wrong at once.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from identities.models import (
    ChildStatus,
    FederatedCredential,
    Identity,
    IdentityRequest,
    RequestKind,
    RequestStatus,
    RoleAssignment,
    RoleChange,
)
from provisioning.models import ProvisioningStep, StepStatus
from provisioning.reconcile import role_assignment_name
from tests.support.sandbox import Sandbox

UAMI_SEGMENT = "/providers/microsoft.managedidentity/userassignedidentities/"


def _uami_key(subscription_id: str, resource_group: str, name: str) -> str:
    return f"/subscriptions/{subscription_id}/resourcegroups/{resource_group}{UAMI_SEGMENT}{name}"


def azure_disagreements(sandbox: Sandbox) -> list[str]:
    """Every way the emulator's identities, FICs and role assignments differ from the DB."""
    arm = sandbox.arm()
    problems: list[str] = []
    identities = {
        _uami_key(i.subscription_id, i.resource_group, i.name).lower(): i
        for i in Identity.objects.all()
    }
    by_principal = {i.principal_id.lower(): i for i in identities.values() if i.principal_id}

    # Identities: one per DB identity, none the DB does not know, the ids the DB recorded.
    for key, uami in arm["identities"].items():
        identity = identities.get(key.lower())
        if identity is None:
            problems.append(f"orphan identity in Azure: {uami['name']}")
        elif identity.principal_id and identity.principal_id.lower() != uami["principal_id"]:
            problems.append(
                f"identity {identity.name}: DB principal {identity.principal_id}, "
                f"Azure {uami['principal_id']}"
            )
    for key, identity in identities.items():
        if identity.status == Identity.Status.READY and key not in arm["identities"]:
            problems.append(f"ready identity {identity.name} is missing in Azure")

    # FICs: exactly one per ServiceAccount, each one a DB credential of that identity.
    for key, fics in arm["fics"].items():
        identity = identities.get(key.lower())
        if identity is None:
            problems.append(f"FICs on an identity the DB does not know: {key}")
            continue
        known = {f.name.lower(): f for f in identity.federated_credentials.all()}
        subjects = Counter(fic["subject"] for fic in fics.values())
        problems += [
            f"identity {identity.name}: {count} FICs for {subject}"
            for subject, count in subjects.items()
            if count > 1
        ]
        for name, fic in fics.items():
            row = known.get(name)
            if row is None:
                problems.append(f"orphan FIC {fic['name']} on {identity.name}")
            elif (row.issuer, row.subject, [row.audience]) != (
                fic["issuer"],
                fic["subject"],
                fic["audiences"],
            ):
                problems.append(f"FIC {fic['name']} on {identity.name} differs from the DB")
    for fic_row in FederatedCredential.objects.filter(status=ChildStatus.ACTIVE).select_related(
        "identity"
    ):
        identity_key = _uami_key(
            fic_row.identity.subscription_id, fic_row.identity.resource_group, fic_row.identity.name
        ).lower()
        if fic_row.name.lower() not in arm["fics"].get(identity_key, {}):
            problems.append(f"active FIC {fic_row.name} is missing in Azure")

    # Role assignments: exactly one per (identity, role, scope), under the deterministic name.
    expected: dict[str, RoleAssignment] = {}
    for assignment in RoleAssignment.objects.select_related("identity", "role"):
        if assignment.identity.principal_id:
            name = role_assignment_name(
                scope=assignment.scope,
                principal_id=assignment.identity.principal_id,
                role_guid=assignment.role.role_definition_guid,
            )
            expected[name] = assignment
    triples = Counter(
        (ra["principal_id"], ra["role_guid"], ra["scope"].lower())
        for ra in arm["role_assignments"].values()
    )
    problems += [
        f"{count} role assignments for principal {p}, role {r}, scope {s}"
        for (p, r, s), count in triples.items()
        if count > 1
    ]
    for name, ra in arm["role_assignments"].items():
        row = expected.get(name)
        owner = by_principal.get(ra["principal_id"].lower())
        if row is None or owner is None:
            problems.append(f"orphan role assignment {name} on {ra['scope']}")
        elif row.identity_id != owner.pk or row.scope.lower() != ra["scope"].lower():
            problems.append(f"role assignment {name} does not match its DB row")
    for name, row in expected.items():
        if row.status == ChildStatus.REMOVED and name in arm["role_assignments"]:
            # A change or decommission removed it: gone from Azure too, not left behind.
            problems.append(f"removed role assignment {name} on {row.scope} is still in Azure")
        if row.status == ChildStatus.ACTIVE:
            if name not in arm["role_assignments"]:
                problems.append(f"active role assignment {name} is missing in Azure")
            if row.name != name:
                problems.append(f"role assignment row {row.pk} records name {row.name!r}")

    # The request log: each resource was created (201) at most once.
    creates = Counter(
        entry["path"].lower()
        for entry in sandbox.emulator.requests()
        if entry["method"] == "PUT" and entry["status"] == 201
    )
    problems += [f"created {count} times: {path}" for path, count in creates.items() if count > 1]
    return problems


def ready_request_disagreements(identity_request: IdentityRequest) -> list[str]:
    """A ready request's DB rows: every step done, its identity, FICs and roles live."""
    problems: list[str] = []
    label = f"request {identity_request.pk}"
    if identity_request.status != RequestStatus.READY:
        return [f"{label} is {identity_request.status}: {identity_request.last_error}"]
    steps = ProvisioningStep.objects.filter(identity_request=identity_request)
    problems += [
        f"{label}: step {s.key} is {s.status}" for s in steps if s.status != StepStatus.DONE
    ]
    identity = Identity.objects.get(pk=identity_request.identity_id)
    if identity.status != Identity.Status.READY or not identity.principal_id:
        problems.append(f"{label}: identity {identity.name} is {identity.status}")
    for fic in identity.federated_credentials.filter(identity_request=identity_request):
        if fic.status != ChildStatus.ACTIVE:
            problems.append(f"{label}: FIC {fic.name} is {fic.status}")
    for ra in identity.role_assignments.filter(identity_request=identity_request):
        if ra.status == ChildStatus.REMOVED and _removed_by_a_later_change(identity_request, ra):
            continue  # granted by this request, then taken away by a later change: as approved
        if ra.status != ChildStatus.ACTIVE or not ra.name or not ra.azure_id:
            problems.append(f"{label}: role assignment {ra.pk} is {ra.status}, name {ra.name!r}")
    return problems


def _removed_by_a_later_change(identity_request: IdentityRequest, ra: Any) -> bool:
    """A later, ready change of roles of the same identity asked to remove this role and scope."""
    return IdentityRequest.objects.filter(
        identity_id=identity_request.identity_id,
        kind=RequestKind.CHANGE_ROLES,
        status=RequestStatus.READY,
        pk__gt=identity_request.pk,
        roles__change=RoleChange.REMOVE,
        roles__role_id=ra.role_id,
        roles__scope__iexact=ra.scope,
    ).exists()


def summary(identity_requests: list[IdentityRequest]) -> dict[str, Any]:
    """Status counts, for assertion messages."""
    return dict(Counter(str(r.status) for r in identity_requests))
