"""Federated identity credentials through the real SDK (AZURE-FACTS §1.2, §2.4)."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.mgmt.msi.models import FederatedIdentityCredential

from tests.emulator.conftest import (
    RG,
    IdentityFactory,
    RawArm,
    arm_error,
    identity_path,
    with_status,
)
from tests.support.emulator import EXCHANGE_AUDIENCE, AzureClients, Emulator

ISSUER = "https://oidc.example.test/issuer/"


def fic(
    subject: str = "system:serviceaccount:team-a:app", **overrides: Any
) -> FederatedIdentityCredential:
    values: dict[str, Any] = {
        "issuer": ISSUER,
        "subject": subject,
        "audiences": [EXCHANGE_AUDIENCE],
    }
    values.update(overrides)
    return FederatedIdentityCredential(**values)


@pytest.fixture
def identity(make_identity: IdentityFactory) -> Any:
    return make_identity("id-fed")


def test_create_201_update_200_get_and_delete_200_then_204(
    azure_clients: AzureClients, identity: Any
) -> None:
    fics = azure_clients.msi.federated_identity_credentials
    created = fics.create_or_update(RG, "id-fed", "fic-app", fic(), cls=with_status)
    updated = fics.create_or_update(
        RG, "id-fed", "fic-app", fic("system:serviceaccount:team-a:other"), cls=with_status
    )
    fetched = fics.get(RG, "id-fed", "fic-app")
    deleted = fics.delete(RG, "id-fed", "fic-app", cls=with_status)
    deleted_again = fics.delete(RG, "id-fed", "fic-app", cls=with_status)

    assert (created[0], updated[0], deleted[0], deleted_again[0]) == (201, 200, 200, 204)
    assert fetched.id == f"{identity.id}/federatedIdentityCredentials/fic-app"
    assert (
        fetched.type
        == "Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials"
    )
    assert (fetched.issuer, fetched.subject, fetched.audiences) == (
        ISSUER,
        "system:serviceaccount:team-a:other",
        [EXCHANGE_AUDIENCE],
    )


def test_list_pages_with_top_across_three_pages(
    emulator: Emulator, azure_clients: AzureClients, identity: Any
) -> None:
    emulator.config(fic_write_ms=0)
    fics = azure_clients.msi.federated_identity_credentials
    for n in range(5):
        fics.create_or_update(RG, "id-fed", f"fic-{n}", fic(f"system:serviceaccount:ns:sa-{n}"))

    listed = [f.name for f in fics.list(RG, "id-fed", top=2)]

    assert listed == [f"fic-{n}" for n in range(5)]
    pages = [e for e in emulator.requests() if e["op"] == "fic.list"]
    assert len(pages) == 3
    assert all("%24top=2" in e["query"] or "$top=2" in e["query"] for e in pages)


@pytest.mark.parametrize("name", ["ab", "f.bad", "-abc", "a" * 121])
def test_invalid_names_are_refused_by_the_server(
    azure_clients: AzureClients, identity: Any, name: str
) -> None:
    with pytest.raises(HttpResponseError) as caught:
        azure_clients.msi.federated_identity_credentials.create_or_update(RG, "id-fed", name, fic())
    assert caught.value.status_code == 400
    assert (
        arm_error(caught.value).message
        == f"Federated Identity Credential name '{name}' is invalid."
    )


def test_a_120_character_name_is_accepted(azure_clients: AzureClients, identity: Any) -> None:
    name = "a" + "-_b" * 39 + "c" * 2
    assert len(name) == 120
    made = azure_clients.msi.federated_identity_credentials.create_or_update(
        RG, "id-fed", name, fic()
    )
    assert made.name == name


def test_issuer_and_subject_must_be_unique_per_identity(
    emulator: Emulator, azure_clients: AzureClients, identity: Any
) -> None:
    emulator.config(fic_write_ms=0)
    fics = azure_clients.msi.federated_identity_credentials
    fics.create_or_update(RG, "id-fed", "fic-one", fic())
    with pytest.raises(HttpResponseError) as caught:
        fics.create_or_update(RG, "id-fed", "fic-two", fic())
    assert caught.value.status_code == 400
    assert arm_error(caught.value).code == "BadRequest"
    assert arm_error(caught.value).message == (
        "Issuer and subject combination already exists for this Managed Identity."
    )


@pytest.mark.parametrize("audiences", [[], [EXCHANGE_AUDIENCE, "api://other"]])
def test_exactly_one_audience(
    azure_clients: AzureClients, identity: Any, audiences: list[str]
) -> None:
    with pytest.raises(HttpResponseError) as caught:
        azure_clients.msi.federated_identity_credentials.create_or_update(
            RG, "id-fed", "fic-aud", fic(audiences=audiences)
        )
    assert caught.value.status_code == 400
    assert (
        arm_error(caught.value).message
        == "Federated identity credentials must have exactly one audience."
    )


def test_fields_longer_than_600_characters_are_refused(
    azure_clients: AzureClients, identity: Any
) -> None:
    with pytest.raises(HttpResponseError) as caught:
        azure_clients.msi.federated_identity_credentials.create_or_update(
            RG, "id-fed", "fic-long", fic("s" * 601)
        )
    assert caught.value.status_code == 400


def test_missing_properties_are_refused(
    raw_arm: RawArm, azure_clients: AzureClients, identity: Any
) -> None:
    path = (
        identity_path(azure_clients.subscription_id, "id-fed")
        + "/federatedIdentityCredentials/fic-x"
    )
    empty = raw_arm("PUT", path, json={"properties": {}})
    partial = raw_arm("PUT", path, json={"properties": {"issuer": ISSUER, "audiences": ["a"]}})
    assert empty.status_code == partial.status_code == 400
    assert empty.json()["error"]["message"] == (
        "Federated Identity Credential from HTTP body has empty properties"
    )
    assert "must specify 'issuer', 'subject' and 'audience'" in partial.json()["error"]["message"]


def test_a_missing_parent_identity_is_404(azure_clients: AzureClients) -> None:
    with pytest.raises(ResourceNotFoundError) as caught:
        azure_clients.msi.federated_identity_credentials.create_or_update(
            RG, "id-none", "fic-x", fic()
        )
    assert arm_error(caught.value).message == "The parent user-assigned identity doesn't exist."
    with pytest.raises(ResourceNotFoundError):
        list(azure_clients.msi.federated_identity_credentials.list(RG, "id-none"))


def test_the_21st_credential_is_refused(
    emulator: Emulator, azure_clients: AzureClients, identity: Any
) -> None:
    emulator.config(fic_write_ms=0)
    fics = azure_clients.msi.federated_identity_credentials
    for n in range(20):
        fics.create_or_update(RG, "id-fed", f"fic-{n:02}", fic(f"system:serviceaccount:ns:sa-{n}"))
    # Updating one of the twenty is still fine; only a 21st is refused.
    fics.create_or_update(RG, "id-fed", "fic-00", fic("system:serviceaccount:ns:renamed"))

    with pytest.raises(HttpResponseError) as caught:
        fics.create_or_update(RG, "id-fed", "fic-20", fic("system:serviceaccount:ns:sa-20"))

    assert caught.value.status_code == 400
    assert arm_error(caught.value).code == "BadRequest"
    assert arm_error(caught.value).message.startswith("Too many Federated Identity Credentials.")
    assert len(list(fics.list(RG, "id-fed"))) == 20


def test_the_limit_and_its_error_are_configurable(
    emulator: Emulator, azure_clients: AzureClients, identity: Any
) -> None:
    emulator.config(
        fic_write_ms=0, fic_limit=1, fic_limit_error_status=409, fic_limit_error_code="Conflict"
    )
    fics = azure_clients.msi.federated_identity_credentials
    fics.create_or_update(RG, "id-fed", "fic-one", fic())
    with pytest.raises(ResourceExistsError) as caught:
        fics.create_or_update(RG, "id-fed", "fic-two", fic("system:serviceaccount:ns:two"))
    assert arm_error(caught.value).code == "Conflict"


def test_concurrent_writes_on_one_identity_get_409_with_the_exact_error(
    emulator: Emulator, azure_clients: AzureClients, identity: Any
) -> None:
    emulator.config(fic_write_ms=400)
    fics = azure_clients.msi.federated_identity_credentials
    # Warm the credential first so both writes leave at the same moment.
    azure_clients.credential.get_token("https://management.azure.com/.default")
    barrier = threading.Barrier(2)
    outcomes: dict[str, Any] = {}

    def write(name: str) -> None:
        barrier.wait()
        try:
            outcomes[name] = fics.create_or_update(
                RG, "id-fed", name, fic(f"system:serviceaccount:ns:{name}")
            )
        except ResourceExistsError as exc:
            outcomes[name] = exc

    threads = [threading.Thread(target=write, args=(n,)) for n in ("fic-a", "fic-b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    errors = [o for o in outcomes.values() if isinstance(o, ResourceExistsError)]
    assert len(outcomes) == 2 and len(errors) == 1
    error = errors[0]
    assert error.status_code == 409
    assert (
        arm_error(error).code
        == "ConcurrentFederatedIdentityCredentialsWritesForSingleManagedIdentity"
    )
    assert arm_error(error).message == (
        "Too many Federated Identity Credentials are written concurrently for the managed identity "
        f"'{identity.id.lower()}'. Concurrent Federated Identity Credentials writes under the same "
        "managed identity are not supported."
    )


def test_writes_on_different_identities_do_not_conflict(
    emulator: Emulator, azure_clients: AzureClients, make_identity: IdentityFactory
) -> None:
    emulator.config(fic_write_ms=300)
    make_identity("id-one")
    make_identity("id-two")
    fics = azure_clients.msi.federated_identity_credentials
    barrier = threading.Barrier(2)
    failures: list[Exception] = []

    def write(identity_name: str) -> None:
        barrier.wait()
        try:
            fics.create_or_update(RG, identity_name, "fic-x", fic())
        except Exception as exc:
            failures.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in ("id-one", "id-two")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert failures == []


def test_deleting_the_identity_deletes_its_credentials(
    emulator: Emulator, azure_clients: AzureClients, make_identity: IdentityFactory
) -> None:
    emulator.config(fic_write_ms=0)
    make_identity("id-fed")
    azure_clients.msi.federated_identity_credentials.create_or_update(RG, "id-fed", "fic-x", fic())
    azure_clients.msi.user_assigned_identities.delete(RG, "id-fed")
    make_identity("id-fed")
    assert list(azure_clients.msi.federated_identity_credentials.list(RG, "id-fed")) == []
