"""Behaviour knobs: throttling, injected faults, latency, and the control API that sets them."""

from __future__ import annotations

import contextlib
import threading
import time

import pytest
from azure.core.exceptions import HttpResponseError, ServiceResponseError
from azure.mgmt.msi.models import Identity

from tests.emulator.conftest import RG, IdentityFactory, RawArm, arm_error, identity_path
from tests.support.emulator import AzureClients, Emulator, EmulatorControlError


def test_a_throttled_write_gets_429_with_retry_after_and_azure_core_honours_it(
    emulator: Emulator, azure_clients: AzureClients, raw_arm: RawArm
) -> None:
    emulator.config(write_bucket_capacity=1, write_bucket_refill_per_second=1)
    path = identity_path(azure_clients.subscription_id, "id-raw")
    first = raw_arm("PUT", path, json={"location": "eastus"})
    throttled = raw_arm("PUT", path, json={"location": "eastus"})

    assert first.status_code == 201
    assert first.headers["x-ms-ratelimit-remaining-subscription-writes"] == "0"
    assert throttled.status_code == 429
    error = throttled.json()["error"]
    assert error["code"] == "SubscriptionRequestsThrottled"
    assert error["message"].startswith(
        f"Number of 'write' requests for subscription '{azure_clients.subscription_id}' actor '"
    )
    assert int(throttled.headers["Retry-After"]) >= 1

    started = time.monotonic()
    made = azure_clients.msi.user_assigned_identities.create_or_update(
        RG, "id-sdk", Identity(location="eastus")
    )
    elapsed = time.monotonic() - started

    assert made.name == "id-sdk"
    assert elapsed >= 0.9  # azure-core slept Retry-After: 1 before retrying
    statuses = [e["status"] for e in emulator.requests() if e["path"].endswith("/id-sdk")]
    assert statuses == [429, 201]


def test_unthrottled_answers_carry_the_token_bucket_headers(
    emulator: Emulator, azure_clients: AzureClients, raw_arm: RawArm
) -> None:
    path = identity_path(azure_clients.subscription_id, "id-headers")
    written = raw_arm("PUT", path, json={"location": "eastus"})
    read = raw_arm("GET", path)
    deleted = raw_arm("DELETE", path)

    assert written.headers["x-ms-ratelimit-remaining-subscription-writes"] == "199"
    assert written.headers["x-ms-ratelimit-remaining-subscription-global-writes"] == "2999"
    assert read.headers["x-ms-ratelimit-remaining-subscription-reads"] == "249"
    assert read.headers["x-ms-ratelimit-remaining-subscription-global-reads"] == "3749"
    assert deleted.headers["x-ms-ratelimit-remaining-subscription-deletes"] == "199"
    assert deleted.headers["x-ms-ratelimit-remaining-subscription-global-deletes"] == "2999"
    assert "x-ms-ratelimit-remaining-subscription-writes" not in deleted.headers


def test_deletes_have_their_own_bucket(
    emulator: Emulator, azure_clients: AzureClients, raw_arm: RawArm
) -> None:
    sub = azure_clients.subscription_id
    raw_arm("PUT", identity_path(sub, "id-one"), json={"location": "eastus"})
    raw_arm("PUT", identity_path(sub, "id-two"), json={"location": "eastus"})
    emulator.config(
        write_bucket_capacity=1,
        write_bucket_refill_per_second=0.01,
        delete_bucket_capacity=1,
        delete_bucket_refill_per_second=0.01,
    )
    assert raw_arm("PUT", identity_path(sub, "id-w"), json={"location": "eastus"}).ok
    assert raw_arm("PUT", identity_path(sub, "id-w"), json={"location": "eastus"}).status_code == (
        429
    )

    first = raw_arm("DELETE", identity_path(sub, "id-one"))  # the write bucket is empty
    second = raw_arm("DELETE", identity_path(sub, "id-two"))

    assert first.status_code == 200
    assert first.headers["x-ms-ratelimit-remaining-subscription-deletes"] == "0"
    assert second.status_code == 429
    assert second.json()["error"]["code"] == "SubscriptionRequestsThrottled"
    assert "Number of 'delete' requests" in second.json()["error"]["message"]


def test_reads_are_not_throttled_by_the_write_bucket(
    emulator: Emulator, azure_clients: AzureClients, make_identity: IdentityFactory
) -> None:
    make_identity("id-read")
    emulator.config(write_bucket_capacity=1, write_bucket_refill_per_second=0.01)
    for _ in range(3):
        azure_clients.msi.user_assigned_identities.get(RG, "id-read")


def test_reads_have_their_own_bucket(
    emulator: Emulator, azure_clients: AzureClients, raw_arm: RawArm
) -> None:
    sub = azure_clients.subscription_id
    raw_arm("PUT", identity_path(sub, "id-r"), json={"location": "eastus"})
    emulator.config(read_bucket_capacity=2, read_bucket_refill_per_second=0.01)

    answers = [raw_arm("GET", identity_path(sub, "id-r")) for _ in range(3)]

    assert [a.status_code for a in answers] == [200, 200, 429]
    assert [a.headers["x-ms-ratelimit-remaining-subscription-reads"] for a in answers] == [
        "1",
        "0",
        "0",
    ]
    error = answers[2].json()["error"]
    assert error["code"] == "SubscriptionRequestsThrottled"
    assert error["message"].startswith(f"Number of 'read' requests for subscription '{sub}'")
    assert int(answers[2].headers["Retry-After"]) >= 1
    # Writes are not held up by an empty read bucket.
    assert raw_arm("PUT", identity_path(sub, "id-r2"), json={"location": "eastus"}).ok


def test_injected_500s_reach_the_sdk_and_fault_ops_narrows_them(
    emulator: Emulator, azure_clients: AzureClients, make_identity: IdentityFactory
) -> None:
    make_identity("id-fault")
    emulator.config(fault_rate_500=1.0, fault_ops=["PUT"])
    uamis = azure_clients.msi.user_assigned_identities

    assert uamis.get(RG, "id-fault").name == "id-fault"
    with pytest.raises(HttpResponseError) as caught:
        uamis.create_or_update(RG, "id-fault", Identity(location="eastus"), retry_total=0)
    assert caught.value.status_code == 500
    assert arm_error(caught.value).code == "InternalServerError"


def test_a_fault_after_the_write_loses_the_answer_but_keeps_the_change(
    emulator: Emulator, azure_clients: AzureClients
) -> None:
    emulator.config(fault_rate_500=1.0, fault_ops=["uami.put"], fault_phase="after")
    uamis = azure_clients.msi.user_assigned_identities
    with pytest.raises(HttpResponseError):
        uamis.create_or_update(RG, "id-lost", Identity(location="eastus"), retry_total=0)
    assert uamis.get(RG, "id-lost").name == "id-lost"


def test_a_timeout_fault_drops_the_connection(
    emulator: Emulator, azure_clients: AzureClients
) -> None:
    emulator.config(fault_rate_timeout=1.0, fault_timeout_seconds=0.2, fault_ops=["GET"])
    with pytest.raises(ServiceResponseError):
        azure_clients.msi.user_assigned_identities.get(RG, "id-any", retry_total=0)
    dropped = [e for e in emulator.requests() if e["op"] == "uami.get"]
    assert dropped[0]["status"] is None and dropped[0]["error"] == "FaultTimeout"


def test_a_call_held_across_a_reset_is_not_logged_in_the_fresh_log(
    emulator: Emulator, azure_clients: AzureClients
) -> None:
    emulator.config(fault_rate_timeout=1.0, fault_timeout_seconds=2.0, fault_ops=["GET"])

    def call() -> None:
        with contextlib.suppress(ServiceResponseError):
            azure_clients.msi.user_assigned_identities.get(RG, "id-held", retry_total=0)

    azure_clients.credential.get_token("https://management.azure.com/.default")
    held = threading.Thread(target=call)
    held.start()
    time.sleep(0.7)  # the call is held (2 s) when the reset comes
    emulator.reset()
    held.join(timeout=10)

    assert not held.is_alive()
    assert [e for e in emulator.requests() if e["op"] == "uami.get"] == []
    # A call received after the reset is logged as before.
    emulator.config(fault_rate_timeout=1.0, fault_timeout_seconds=0.2, fault_ops=["GET"])
    call()
    assert [e["error"] for e in emulator.requests() if e["op"] == "uami.get"] == ["FaultTimeout"]


def test_latency_is_added_to_arm_calls(emulator: Emulator, azure_clients: AzureClients) -> None:
    azure_clients.credential.get_token("https://management.azure.com/.default")
    emulator.config(latency_ms=300)
    started = time.monotonic()
    with pytest.raises(HttpResponseError):
        azure_clients.msi.user_assigned_identities.get(RG, "id-none")
    assert time.monotonic() - started >= 0.3


def test_faults_never_touch_the_control_api(emulator: Emulator) -> None:
    emulator.config(fault_rate_500=1.0, latency_ms=2000)
    started = time.monotonic()
    assert emulator.control("GET", "health")["status"] == "ok"
    assert time.monotonic() - started < 1


def test_config_rejects_unknown_knobs_and_bad_values_without_changing_anything(
    emulator: Emulator,
) -> None:
    before = emulator.control("GET", "config")
    with pytest.raises(EmulatorControlError) as unknown:
        emulator.config(no_such_knob=1)
    with pytest.raises(EmulatorControlError) as bad:
        emulator.config(latency_ms=5, fault_rate_500=2)
    assert unknown.value.status == bad.value.status == 400
    assert "fault_rate_500" in bad.value.body
    assert emulator.control("GET", "config") == before


def test_reset_restores_the_start_configuration(emulator: Emulator) -> None:
    emulator.config(fic_limit=3)
    emulator.reset()
    assert emulator.control("GET", "config")["fic_limit"] == 20
