"""A webhook URL that cannot be used (a port past 65535 or 0, a host that is no host) is refused
when it is registered or changed, naming the field and the rule; one already stored (registered
before the check) fails its own deliveries, recorded on its rows and its endpoint's log, and every
other row of the batch and of the sweep is delivered."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from identities.errors import PolicyViolationError
from identities.models import (
    AuditEvent,
    DeliveryStatus,
    Notification,
    WebhookDelivery,
    WebhookEndpoint,
)
from identities.policy import RoleDraft
from identities.services import (
    identity_request_reject,
    webhook_endpoint_create,
    webhook_endpoint_update,
)
from notifications import tasks
from tests.identities.conftest import FileRequest
from tests.notifications.test_webhooks import local_receivers_allowed, webhook_rows
from tests.support.http_receiver import Receiver
from tests.support.people import SEARCH_VAULT_SCOPE

pytestmark = pytest.mark.django_db

__all__ = ["local_receivers_allowed"]  # the fixture, shared with the standard-format tests

UNUSABLE = [
    ("https://hooks.example.com:99999/portal", "invalid_port"),
    ("https://hooks.example.com:0/portal", "invalid_port"),
    ("https://[zz]/portal", "invalid_host"),
    ("https://hooks..example.com/portal", "invalid_host"),
]


def _rules(caught: pytest.ExceptionInfo[PolicyViolationError]) -> list[tuple[str, str]]:
    return [(violation.field, violation.rule) for violation in caught.value.violations]


@pytest.mark.parametrize(("url", "rule"), UNUSABLE)
def test_registering_an_unusable_url_is_refused_naming_the_field_and_the_rule(
    url: str, rule: str, requester: Any, team: Any
) -> None:
    with pytest.raises(PolicyViolationError) as caught:
        webhook_endpoint_create(actor=requester, team=team, url=url, events=["request_filed"])
    assert _rules(caught) == [("url", rule)]
    assert not WebhookEndpoint.objects.exists()
    assert not AuditEvent.objects.filter(action="webhook.created").exists()


@pytest.mark.parametrize(("url", "rule"), UNUSABLE)
def test_changing_to_an_unusable_url_is_refused_and_the_old_one_stays(
    url: str, rule: str, requester: Any, team: Any
) -> None:
    endpoint, _ = webhook_endpoint_create(
        actor=requester, team=team, url="https://hooks.example.com/", events=["request_filed"]
    )
    with pytest.raises(PolicyViolationError) as caught:
        webhook_endpoint_update(actor=requester, endpoint=endpoint, url=url)
    assert _rules(caught) == [("url", rule)]
    assert WebhookEndpoint.objects.get(pk=endpoint.pk).url == "https://hooks.example.com/"
    assert not AuditEvent.objects.filter(action="webhook.updated").exists()


def _deliver_in_one_batch(keys: list[str]) -> dict[str, int]:
    """The on-commit task, given the bad row first."""
    return tasks.deliver(keys)


def _sweep(keys: list[str]) -> dict[str, int]:
    """The periodic sweep: oldest first, so the bad row (filed first) comes first."""
    return tasks.sweep()


@pytest.mark.parametrize("run", [_deliver_in_one_batch, _sweep], ids=["deliver", "sweep"])
@pytest.mark.parametrize(
    "stored",
    [
        "https://hooks.example.com:99999/portal",
        "https://[zz]/portal",
        "https://hooks..example.com/portal",
    ],
)
def test_a_stored_unusable_url_fails_its_own_rows_and_every_other_row_is_delivered(
    stored: str,
    run: Callable[[list[str]], dict[str, int]],
    local_receivers_allowed: None,
    settings: Any,
    http_receiver: Receiver,
    second_receiver: Receiver,
    requester: Any,
    team: Any,
    outsider: Any,
    other_team: Any,
    approver: Any,
    file_request: FileRequest,
) -> None:
    settings.WEBHOOK_MAX_ATTEMPTS = 2
    # payments' endpoint, registered before URLs were checked this closely: written directly.
    bad, _ = webhook_endpoint_create(
        actor=requester, team=team, url=http_receiver.url, events=["request_filed"]
    )
    WebhookEndpoint.objects.filter(pk=bad.pk).update(url=stored)
    assert WebhookEndpoint.objects.get(pk=bad.pk).url == stored
    theirs, _ = webhook_endpoint_create(
        actor=outsider, team=other_team, url=http_receiver.url, events=["request_filed"]
    )
    security, _ = webhook_endpoint_create(
        actor=approver, team=None, url=second_receiver.url, events=["request_rejected"]
    )
    ours = file_request()  # payments' filing: the bad endpoint's row, the oldest
    file_request(  # search's filing, on search's own vault: their endpoint's row
        as_user=outsider,
        team="search",
        namespace="search",
        app_name="indexer",
        service_account="indexer",
        roles=(RoleDraft("Key Vault Secrets User", SEARCH_VAULT_SCOPE),),
    )
    identity_request_reject(identity_request=ours, approver=approver, comment="No.")
    rows = {endpoint: webhook_rows().get(endpoint=endpoint) for endpoint in (bad, theirs, security)}

    counts = run([rows[bad].key, rows[theirs].key, rows[security].key])

    assert counts["retry"] == 1 and counts["delivered"] >= 2, counts
    assert len(http_receiver.requests) == 1, "search's endpoint was delivered to"
    assert len(second_receiver.requests) == 1, "security's global endpoint was delivered to"
    for endpoint in (theirs, security):
        rows[endpoint].refresh_from_db()
        assert rows[endpoint].status == DeliveryStatus.DELIVERED
    failed = rows[bad]
    failed.refresh_from_db()
    assert (failed.status, failed.attempts) == (DeliveryStatus.PENDING, 1)
    assert failed.last_error.startswith("The URL cannot be used: ")
    (log,) = WebhookDelivery.objects.filter(endpoint=bad)
    assert (log.status_code, log.error) == (None, failed.last_error)

    # Retried at its backoff, then given up as any failing endpoint is: switched off, team told.
    assert tasks.deliver([failed.key]) == {"failed": 1}
    failed.refresh_from_db()
    assert (failed.status, failed.attempts) == (DeliveryStatus.FAILED, 2)
    bad.refresh_from_db()
    assert not bad.is_active
    assert "after 2 attempts: The URL cannot be used: " in bad.disabled_reason
    assert AuditEvent.objects.filter(action="webhook.disabled", actor=None).count() == 1
    told = Notification.objects.filter(event="webhook_disabled", channel="inbox")
    assert told.filter(recipient=requester).exists()
