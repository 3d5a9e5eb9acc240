"""The seam through which the domain asks Azure what exists, without importing provisioning.

The policy needs two facts only Azure has: whether a scope exists, and the tags of the resource
(a team named in OWNERSHIP_TAG owns it). The picker needs the resources a team may use. Both are
Resource Graph queries, which live in provisioning (`provisioning.resource_graph`); provisioning
registers them here in its AppConfig.ready(), as the worker side registers tasks by name for
`identities.work`. The domain stays the bottom layer and calls `lookup()` / `team_resources()`.

Off (SCOPE_EXISTENCE_CHECK=False), or with nothing registered, `lookup()` answers None: nothing
was looked up and the policy says nothing about existence. Tests swap the functions with
`looking_up_with()` instead of patching.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from django.conf import settings


@dataclass(frozen=True)
class AzureResource:
    """One Resource Graph row: a subscription, resource group or resource that exists."""

    id: str
    type: str
    name: str
    subscription_id: str
    resource_group: str
    location: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)


class ScopeLookupUnavailable(Exception):
    """Azure could not be asked (outage, throttling, no credential); the message says why."""


# ids (canonical: subscription, resource group or top-level resource) -> the rows of those that
# exist, keyed by lower-cased id; ScopeLookupUnavailable when Azure cannot be asked.
Lookup = Callable[[Sequence[str]], Mapping[str, AzureResource]]
# (resource groups as (subscription, group), the team name for OWNERSHIP_TAG, subscriptions)
# -> every resource group and resource the team owns by either rule.
TeamResources = Callable[[Sequence[tuple[str, str]], str, Sequence[str]], Sequence[AzureResource]]

_lookup: Lookup | None = None
_team_resources: TeamResources | None = None


@dataclass(frozen=True)
class _Batch:
    """One lookup made for many checks (a page of requests): what it asked and what it got."""

    asked: frozenset[str]
    found: Mapping[str, AzureResource]
    error: ScopeLookupUnavailable | None = None


_batch: contextvars.ContextVar[_Batch | None] = contextvars.ContextVar(
    "scope_lookup_batch", default=None
)


def register(*, lookup: Lookup, team_resources: TeamResources) -> None:
    """Called once by provisioning's AppConfig.ready()."""
    global _lookup, _team_resources
    _lookup, _team_resources = lookup, team_resources


def enabled() -> bool:
    return bool(settings.SCOPE_EXISTENCE_CHECK) and _lookup is not None


def lookup(ids: Sequence[str]) -> Mapping[str, AzureResource] | None:
    """The rows of the `ids` that exist (lower-cased keys), None when the check is off;
    ScopeLookupUnavailable when Azure cannot be asked."""
    if not ids or not enabled() or _lookup is None:
        return None
    batch = _batch.get()
    if batch is not None and {i.lower() for i in ids} <= batch.asked:
        if batch.error is not None:
            raise batch.error  # asked once for the page; not again per request
        return {i.lower(): batch.found[i.lower()] for i in ids if i.lower() in batch.found}
    return _lookup(ids)


@contextlib.contextmanager
def looked_up_together(ids: Sequence[str]) -> Iterator[None]:
    """Look `ids` up at once (one Resource Graph query for up to 100); within the block,
    `lookup()` of any of them answers from that, or raises the same ScopeLookupUnavailable,
    without asking Azure again (the approval queue: one query for the page, not one a request)."""
    if not ids or not enabled() or _lookup is None:
        yield
        return
    try:
        batch = _Batch(frozenset(i.lower() for i in ids), _lookup(ids))
    except ScopeLookupUnavailable as error:
        batch = _Batch(frozenset(i.lower() for i in ids), {}, error)
    token = _batch.set(batch)
    try:
        yield
    finally:
        _batch.reset(token)


def team_resources(
    *, groups: Sequence[tuple[str, str]], team: str, subscriptions: Sequence[str]
) -> Sequence[AzureResource]:
    """What the team owns in Azure (its resource groups, what is in them, what is tagged for
    it); empty when the lookups are off (SCOPE_EXISTENCE_CHECK=False); ScopeLookupUnavailable
    when Azure cannot be asked or nothing is registered."""
    if not settings.SCOPE_EXISTENCE_CHECK:
        return []
    if _team_resources is None:
        raise ScopeLookupUnavailable("no Azure resource lookup is configured")
    return _team_resources(groups, team, subscriptions)


@contextlib.contextmanager
def looking_up_with(
    lookup_function: Lookup | None, team_resources_function: TeamResources | None = None
) -> Iterator[None]:
    """Use these functions for the duration (tests: a lookup that cannot reach Azure)."""
    global _lookup, _team_resources
    previous = _lookup, _team_resources
    _lookup = lookup_function
    _team_resources = team_resources_function or _team_resources
    try:
        yield
    finally:
        _lookup, _team_resources = previous
