"""What exists in Azure, from Azure Resource Graph: the lookups behind `identities.scope_lookup`.

Two query shapes, and only these (the emulator serves exactly them, see
azure_emulator/resourcegraph.py):

- existence: ``resources | union resourcecontainers | where id in~ ('<id>', ...) | project
  <columns>``: subscriptions and resource groups are rows of ``resourcecontainers``, resources of
  ``resources`` (Learn: "Understanding the Azure Resource Graph query language", tables and the
  `union` operator);
- a team's resources: the same tables ``| where (subscriptionId =~ '<sub>' and resourceGroup =~
  '<group>') or ... or tags['<OWNERSHIP_TAG>'] =~ '<team>' | project <columns> | order by id asc``.

Every answer is paged with `$skipToken` and cached in the Django cache for
SCOPE_LOOKUP_CACHE_SECONDS (per id for existence, absence included; per team and owned groups for
the picker). Any failure to ask (outage, no credential, a quota that resets too late for the
caller) is ScopeLookupUnavailable.

Resource Graph's per-user quota (Learn, "Guidance for throttled requests in Azure Resource
Graph"): "a user can send at most 15 queries within every 5-second window"; every answer carries
`x-ms-user-quota-remaining` (queries left) and `x-ms-user-quota-resets-after` (hh:mm:ss until
the quota resets), and "each paginated query you send takes one query quota". The portal's
principal is one user to Azure, shared by every request and process. So a lookup reads both
headers on every answer: when none is left and another page or chunk is to be asked, it waits
for the reset first (as Learn's sample does); a 429 is waited out (the reset, or Retry-After)
and the query asked again, at most THROTTLED_RETRIES times. See `_Quota` for the bounds.

A team's list is also kept, built, in this process's memory (`_built`), keyed on the stamp of
the Django cache entry it was read from: the type-ahead asks for it on every keystroke, and
rebuilding a few thousand rows from the cache took most of a warm call. The Django cache stays
the shared truth: a row list is used only while its stamp is the one the cache holds, and the
stamp expires with the entry (SCOPE_LOOKUP_CACHE_SECONDS still bounds staleness).
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from azure.core.exceptions import AzureError
from django.conf import settings
from django.core.cache import cache

from identities.memo import BuiltCache
from identities.scope_lookup import AzureResource, ScopeLookupUnavailable
from identities.validators import canonical_arm_id
from provisioning.azure import AzureGateway, ResourceGraphPage, get_gateway, subscription_of
from provisioning.errors import GatewayError, TransientError

COLUMNS = "id, type, name, subscriptionId, resourceGroup, location, tags"
TABLES = "resources | union resourcecontainers"
PAGE_SIZE = 1000  # Resource Graph's largest $top
IDS_PER_QUERY = 100
MAX_PAGES = 200  # 200,000 rows: a team's picker list, far past anything reasonable
# v2: a team's entry is {"stamp", "rows"} beside a small "<key>:stamp" entry.
_CACHE_PREFIX = "resource-graph:v2:"
BUILT_ENTRIES = 32  # teams' lists kept built in this process (a few MB at 4,000 rows each)

# Longest single wait for a reset, whatever a header says (Azure's window is 5 s).
MAX_QUOTA_WAIT_SECONDS = 10.0
# Every caller of lookup() and team_resources() runs inside a web request: the request form and
# its dry run, the API's request and resource endpoints, the approval queue and approver pages,
# the picker's type-ahead (identities.selectors.policy, .resources, .approvals; no worker asks).
# So one lookup sleeps at most this long in all, however many pages and chunks it asks: enough
# for one reset of Azure's documented 5-second window, short enough for a page to still come
# back. A lookup that would have to wait longer gives up at once, as ScopeLookupUnavailable
# saying so (the policy then marks the scope unverified; the picker says Azure did not answer).
WEB_QUOTA_WAIT_SECONDS = 5.0
THROTTLED_RETRIES = 2  # a query answered 429 is asked again at most this many times

# cache key -> the rows built from that entry, kept while the entry's stamp is unchanged.
_built: BuiltCache[tuple[AzureResource, ...]] = BuiltCache(BUILT_ENTRIES)


def kql_string(value: str) -> str:
    """A KQL string literal (single quotes; backslash escapes)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def existence_query(ids: Sequence[str]) -> str:
    listed = ", ".join(kql_string(resource_id) for resource_id in ids)
    return f"{TABLES} | where id in~ ({listed}) | project {COLUMNS}"


def team_query(groups: Sequence[tuple[str, str]], tag: str, team: str) -> str:
    clauses = [
        f"(subscriptionId =~ {kql_string(sub)} and resourceGroup =~ {kql_string(group)})"
        for sub, group in groups
    ]
    clauses.append(f"tags[{kql_string(tag)}] =~ {kql_string(team)}")
    return f"{TABLES} | where {' or '.join(clauses)} | project {COLUMNS} | order by id asc"


def _resource(row: Mapping[str, Any]) -> AzureResource:
    tags = row.get("tags")
    return AzureResource(
        id=canonical_arm_id(str(row.get("id", ""))),
        type=str(row.get("type", "")),
        name=str(row.get("name", "")),
        subscription_id=str(row.get("subscriptionId", "")).lower(),
        resource_group=str(row.get("resourceGroup") or ""),
        location=str(row.get("location") or ""),
        tags={str(k): str(v) for k, v in tags.items()} if isinstance(tags, dict) else {},
    )


def _as_cached(resource: AzureResource) -> dict[str, Any]:
    return {
        "id": resource.id,
        "type": resource.type,
        "name": resource.name,
        "subscription_id": resource.subscription_id,
        "resource_group": resource.resource_group,
        "location": resource.location,
        "tags": dict(resource.tags),
    }


def _from_cached(data: Mapping[str, Any]) -> AzureResource:
    return AzureResource(**{**data, "tags": dict(data["tags"])})


@dataclass
class _Quota:
    """What Resource Graph said of the portal's quota during one lookup, and how long the lookup
    may still sleep for it (`budget` seconds in all, at most MAX_QUOTA_WAIT_SECONDS a wait)."""

    budget: float = WEB_QUOTA_WAIT_SECONDS
    resets_at: float | None = field(default=None)  # monotonic; set while none is left

    def read(self, page: ResourceGraphPage) -> None:
        """Remember when the quota resets if the answer says none is left."""
        left, resets_after = page.quota_remaining, page.quota_resets_after
        if left is not None and left <= 0 and resets_after is not None:
            self.resets_at = time.monotonic() + resets_after
        elif left is not None and left > 0:
            self.resets_at = None

    def before_query(self) -> None:
        """Wait for the reset if the last answer left no query (the next one would be 429)."""
        if self.resets_at is not None:
            self.wait(self.resets_at - time.monotonic(), "no query left")
            self.resets_at = None

    def wait(self, seconds: float, why: str) -> None:
        """Sleep `seconds`, or give up at once if that is past a bound."""
        seconds = max(0.0, seconds)
        bound = min(MAX_QUOTA_WAIT_SECONDS, self.budget)
        if seconds > bound:
            raise ScopeLookupUnavailable(
                "Azure Resource Graph cannot be asked now: the portal's query quota is used up "
                f"({why}) and resets in {seconds:.0f} s, longer than this lookup may still wait "
                f"({bound:.0f} s: it runs while someone waits for a page). Try again shortly."
            )
        self.budget -= seconds
        time.sleep(seconds)


def _ask(
    gateway: AzureGateway, quota: _Quota, query: str, subscriptions: list[str], token: str | None
) -> ResourceGraphPage:
    """One page, reading the quota it leaves; a 429 is waited out (Retry-After, or the quota's
    reset, which the gateway puts there) and asked again, at most THROTTLED_RETRIES times."""
    attempt = 0
    while True:
        quota.before_query()
        try:
            page = gateway.query_resources(
                query=query, subscriptions=subscriptions, skip_token=token, top=PAGE_SIZE
            )
        except TransientError as failure:
            if failure.status != 429 or attempt == THROTTLED_RETRIES:
                raise
            if failure.retry_after is None:
                raise  # nothing says when: give up, as before
            quota.resets_at = None
            quota.wait(failure.retry_after, "Resource Graph answered 429")
            attempt += 1
            continue
        quota.read(page)
        return page


def _query_all(
    query: str, subscriptions: Sequence[str], quota: _Quota | None = None
) -> list[AzureResource]:
    """Every page of `query`; ScopeLookupUnavailable when Azure cannot be asked. `quota` is
    shared by the queries of one lookup (their sleeping budget and the last answer's headers)."""
    quota = quota or _Quota()
    found: list[AzureResource] = []
    skip_token: str | None = None
    try:
        gateway = get_gateway()
        for _ in range(MAX_PAGES):
            page = _ask(gateway, quota, query, sorted(set(subscriptions)), skip_token)
            found += [_resource(row) for row in page.rows]
            skip_token = page.skip_token
            if not skip_token:
                break
    except (GatewayError, AzureError) as error:
        raise ScopeLookupUnavailable(f"Azure Resource Graph could not be asked: {error}") from error
    return found


def _key(*parts: str) -> str:
    return _CACHE_PREFIX + hashlib.sha256("|".join(parts).lower().encode()).hexdigest()


def lookup(ids: Sequence[str]) -> dict[str, AzureResource]:
    """The rows of the `ids` that exist, keyed by lower-cased id (cached, absence too)."""
    wanted = sorted({resource_id.lower(): resource_id for resource_id in ids}.items())
    keys = {lower: _key("exists", lower) for lower, _ in wanted}
    cached = cache.get_many(list(keys.values()))
    found: dict[str, AzureResource] = {}
    missing: list[str] = []
    for lower, original in wanted:
        entry = cached.get(keys[lower])
        if entry is None:
            missing.append(original)
        elif entry["exists"]:
            found[lower] = _from_cached(entry["row"])
    quota = _Quota()  # one sleeping budget for all the chunks
    for start in range(0, len(missing), IDS_PER_QUERY):
        chunk = missing[start : start + IDS_PER_QUERY]
        rows = {
            row.id.lower(): row
            for row in _query_all(
                existence_query(chunk), [subscription_of(i) for i in chunk], quota
            )
        }
        fresh: dict[str, Any] = {}
        for resource_id in chunk:
            row = rows.get(resource_id.lower())
            fresh[keys[resource_id.lower()]] = (
                {"exists": True, "row": _as_cached(row)} if row else {"exists": False}
            )
            if row is not None:
                found[resource_id.lower()] = row
        cache.set_many(fresh, timeout=settings.SCOPE_LOOKUP_CACHE_SECONDS)
    return found


def team_resources(
    groups: Sequence[tuple[str, str]], team: str, subscriptions: Sequence[str]
) -> Sequence[AzureResource]:
    """The team's resource groups, what is in them and what is tagged OWNERSHIP_TAG=<team>, in
    `subscriptions`, by id (one paged query, cached). While the cache holds the answer, the
    same tuple object is returned to every caller in this process (callers may key their own
    derived data on it)."""
    if not subscriptions:
        return ()
    key = _key("team", team, settings.OWNERSHIP_TAG, json.dumps(sorted(groups)), *subscriptions)
    stamp = cache.get(key + ":stamp")
    if stamp is not None:
        built = _built.get(key, lambda kept: kept == stamp)
        if built is not None:
            return built
        cached = cache.get(key)
        if cached is not None and cached.get("stamp") == stamp:
            return _built.put(key, stamp, tuple(_from_cached(row) for row in cached["rows"]))
    found = _query_all(team_query(groups, settings.OWNERSHIP_TAG, team), subscriptions)
    allowed = {sub.lower() for sub in subscriptions}
    # Subscriptions themselves are never a team's (and never a picker entry).
    rows = tuple(row for row in found if row.resource_group and row.subscription_id in allowed)
    stamp = uuid.uuid4().hex
    cache.set_many(
        {key: {"stamp": stamp, "rows": [_as_cached(row) for row in rows]}, key + ":stamp": stamp},
        timeout=settings.SCOPE_LOOKUP_CACHE_SECONDS,
    )
    return _built.put(key, stamp, rows)
