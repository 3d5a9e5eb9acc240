"""Azure Resource Graph: ``POST /providers/Microsoft.ResourceGraph/resources`` over the inventory.

Shapes from the REST spec (azure-rest-api-specs, specification/resourcegraph/resource-manager/
Microsoft.ResourceGraph/stable/2022-10-01/resourcegraph.json, operation ``Resources``; the same
body since 2021-03-01, examples ``ResourcesFirstPageQuery.json`` / ``ResourcesNextPageQuery.json``):
request ``{"subscriptions": [...], "managementGroups": [...], "query": "<KQL>", "options":
{"$skipToken", "$top", "$skip", "resultFormat", "allowPartialScopes"}, "facets": [...]}``;
answer ``{"totalRecords", "count", "resultTruncated", "$skipToken"?, "data", "facets"}`` with
``data`` a list of objects for ``resultFormat: objectArray`` (the default since 2021-03-01).
``$top`` is 1..1000 (spec); without it a page holds 100 rows (Learn, "Working with large Azure
resource data sets": "By default, Resource Graph limits any query to returning only 100
records"). The skip token is opaque to clients; here it carries the offset and the query's hash.

Rows are the inventory (inventory.rows): ``resources`` holds resources, ``resourcecontainers``
subscriptions and resource groups (Learn, "Understanding the Azure Resource Graph query
language": tables; ``union`` combines them). Only the query shapes the portal sends are served,
parsed strictly (provisioning/resource_graph.py):

    <tables> | where <condition> [| project <columns>] [| order by id asc|desc]
    tables     := resources | resourcecontainers | resources | union resourcecontainers
    condition  := or-ed / and-ed comparisons, in parentheses as needed:
                  id in~ ('a', 'b', ...)   <column> =~ 'v'   <column> == 'v'
                  tags['key'] =~ 'v'       (columns: id type name subscriptionId resourceGroup
                  location)

``=~`` and ``in~`` compare case-insensitively, ``==`` exactly (KQL string operators); a tag key
is looked up exactly, as KQL's dynamic property access is. Anything else is ARM's answer to an
invalid query: 400 ``BadRequest`` with details ``InvalidQuery`` ("Query is invalid. Please refer
to the documentation for the Azure Resource Graph service and fix the error before retrying.")
and the parser's complaint, as quoted in Azure/azure-powershell#13762 and
scautomation/AzureResourceGraph-Examples#2.

Per-user quota (Learn, "Guidance for throttled requests in Azure Resource Graph",
MicrosoftDocs/azure-docs articles/governance/resource-graph/concepts/
guidance-for-throttled-requests.md): "Azure Resource Graph allocates a quota number for each
user based on a time window. For example, a user can send at most 15 queries within every
5-second window without being throttled", and "In every query response, Azure Resource Graph
adds two throttling headers: x-ms-user-quota-remaining (int) ... This value maps to query count.
x-ms-user-quota-resets-after (hh:mm:ss): The time duration until a user's quota consumption is
reset"; after the reset they read "15 and 00:00:05". "Each paginated query you send takes one
query quota" (same page, "Pagination"). See ``UserQuota``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from azure_emulator import armcommon as arm
from azure_emulator import inventory
from azure_emulator.context import Context
from azure_emulator.protocol import (
    ArmError,
    HttpError,
    Request,
    Response,
    Route,
    json_response,
    utc_now,
)

PATH = "/providers/microsoft.resourcegraph/resources"
TOP_MAX = 1000
TOP_DEFAULT = 100
COLUMNS = ("id", "type", "name", "subscriptionId", "resourceGroup", "location", "tags")
CONTAINER_TYPES = frozenset({inventory.SUBSCRIPTION_TYPE, inventory.RESOURCE_GROUP_TYPE})
_TOKEN = re.compile(
    r"\s*(?:(?P<string>'(?:[^'\\]|\\.)*')|(?P<op>=~|==|in~|\||\(|\)|\[|\]|,)"
    r"|(?P<word>[A-Za-z_][A-Za-z0-9_]*))",
)

Row = dict[str, Any]
Predicate = Callable[[Row], bool]
# The lower-cased ids of the registered rows a condition can match (a superset, read from
# inventory.Index), or None when the condition cannot narrow them (then every row is read).
Plan = Callable[[inventory.Index], set[str] | None]
Condition = tuple[Predicate, Plan]


def _everything(_: inventory.Index) -> None:
    return None


def _support_message() -> str:
    """The top-level message of Resource Graph's error answers (both quoted bodies have it)."""
    timestamp = utc_now().strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return (
        "Please provide below info when asking for support: timestamp = "
        f"{timestamp}, correlationId = {uuid.uuid4()}."
    )


class QueryError(ArmError):
    """Resource Graph's refusal of a query: ARM's envelope with the parser's details."""

    def __init__(self, problem: str) -> None:
        super().__init__(400, "BadRequest", problem)
        self.problem = problem

    def response(self) -> Response:
        payload = {
            "error": {
                "code": "BadRequest",
                "message": _support_message(),
                "details": [
                    {
                        "code": "InvalidQuery",
                        "message": "Query is invalid. Please refer to the documentation for the "
                        "Azure Resource Graph service and fix the error before retrying.",
                    },
                    {"code": "UnsupportedQuery", "message": self.problem},
                ],
            }
        }
        return json_response(400, payload, error_code="InvalidQuery")


def route(ctx: Context, request: Request) -> Route | None:
    if request.path.rstrip("/").lower() != PATH:
        return None
    if request.method != "POST":
        return Route(
            "arm.method_not_allowed",
            "arm",
            lambda: arm.method_not_allowed(request.method),
            faulty=True,
        )
    return Route("graph.query", "arm", lambda: _answer(ctx, request), faulty=True)


# --- the per-user quota ----------------------------------------------------------------------

REMAINING_HEADER = "x-ms-user-quota-remaining"
RESETS_AFTER_HEADER = "x-ms-user-quota-resets-after"
# Learn's example default (the guidance page above): 15 queries in every 5-second window. With
# the graph_quota_queries knob null (the default, so the benchmarks keep their pace) nothing is
# throttled and every answer says what Azure's default quota says after one query.
AZURE_DEFAULT_QUERIES, AZURE_DEFAULT_WINDOW_SECONDS = 15, 5


def _hh_mm_ss(seconds: float) -> str:
    """A duration as the header writes it (hh:mm:ss), rounded up: a client that waits this long
    finds the quota reset."""
    whole = max(0, math.ceil(seconds))
    return f"{whole // 3600:02}:{whole % 3600 // 60:02}:{whole % 60:02}"


class RateLimited(ArmError):
    """Resource Graph's 429 over the quota. Body as quoted from a real answer in
    Azure/azure-cli-extensions#3325 (code RateLimiting, the support line, a detail pointing at
    aka.ms/resourcegraph-throttling). Learn names no Retry-After for it, so none is sent: the
    quota headers say when to come back."""

    def __init__(self, headers: Mapping[str, str]) -> None:
        super().__init__(
            429,
            "RateLimiting",
            "Client application has been throttled and should not attempt to repeat the request "
            "until an amount of time has elapsed. Please see "
            "https://aka.ms/resourcegraph-throttling for help.",
            headers=headers,
        )

    def response(self) -> Response:
        payload = {
            "error": {
                "code": "RateLimiting",
                "message": _support_message(),
                "details": [{"code": "RateLimiting", "message": self.message}],
            }
        }
        return json_response(429, payload, headers=self.headers, error_code="RateLimiting")


class UserQuota:
    """A fixed window per caller (tenant and object id of the token): the first query opens a
    window of ``graph_quota_window_seconds``; it holds ``graph_quota_queries`` queries, every
    further one is answered 429 until the window ends. A throttled query takes no quota.

    Windows are forgotten whenever the knobs are replaced (any PATCH of the configuration, or a
    reset), so a test that sets the quota starts from a full one."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._knobs: Mapping[str, Any] | None = None
        # caller -> (monotonic start of the window, queries taken in it)
        self._windows: dict[str, tuple[float, int]] = {}

    def take(self, caller: str, knobs: Mapping[str, Any]) -> tuple[bool, dict[str, str]]:
        """Count one query: (allowed, the two quota headers for its answer)."""
        limit, window = knobs["graph_quota_queries"], float(knobs["graph_quota_window_seconds"])
        if limit is None:
            return True, {
                REMAINING_HEADER: str(AZURE_DEFAULT_QUERIES - 1),
                RESETS_AFTER_HEADER: _hh_mm_ss(AZURE_DEFAULT_WINDOW_SECONDS),
            }
        now = time.monotonic()
        with self._lock:
            if knobs is not self._knobs:
                self._knobs, self._windows = knobs, {}
            started, taken = self._windows.get(caller, (now, 0))
            if now >= started + window:
                started, taken = now, 0
            allowed = taken < limit
            if allowed:
                taken += 1
            self._windows[caller] = (started, taken)
        return allowed, {
            REMAINING_HEADER: str(limit - taken),
            RESETS_AFTER_HEADER: _hh_mm_ss(started + window - now),
        }


# One emulator process serves one Context; the quota lives beside it, in memory only.
_quota = UserQuota()


def _caller(request: Request) -> str:
    claims = request.caller or {}
    return f"{claims.get('tid', '')}/{claims.get('oid') or claims.get('sub', '')}".lower()


def _answer(ctx: Context, request: Request) -> Response:
    """The query's answer with the quota headers; 429 RateLimiting past the quota."""
    allowed, headers = _quota.take(_caller(request), ctx.knobs)
    if not allowed:
        raise RateLimited(headers)
    try:
        response = _query(ctx, request)
    except HttpError as exc:  # a refused query took its quota too: "every query response"
        response = exc.response()
    response.headers.update(headers)
    return response


# --- the query language (the portal's shapes only) -------------------------------------------


def _tokens(query: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    position = 0
    text = query.rstrip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise QueryError(f"Unexpected character at position {position}: {text[position]!r}.")
        kind = match.lastgroup or ""
        tokens.append((kind, match.group(kind)))
        position = match.end()
    return tokens


def _unquote(literal: str) -> str:
    return re.sub(r"\\(.)", r"\1", literal[1:-1])


class _Parser:
    def __init__(self, query: str) -> None:
        self.tokens = _tokens(query)
        self.at = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def take(self, kind: str, value: str | None = None) -> str:
        token = self.peek()
        if token is None or token[0] != kind or (value is not None and token[1] != value):
            wanted = value or kind
            found = token[1] if token else "the end of the query"
            raise QueryError(f"Expected {wanted!r}, found {found!r}.")
        self.at += 1
        return token[1]

    def take_word(self, *allowed: str) -> str:
        word = self.take("word")
        if word.lower() not in {a.lower() for a in allowed}:
            raise QueryError(f"{word!r} is not supported here (supported: {', '.join(allowed)}).")
        return word.lower()

    def parse(self) -> tuple[set[str], Condition, tuple[str, ...], bool | None]:
        tables = {self.take_word("resources", "resourcecontainers")}
        self.take("op", "|")
        if self.peek() == ("word", "union"):
            self.take("word", "union")
            other = self.take_word("resources", "resourcecontainers")
            if other in tables:
                raise QueryError(f"Table {other!r} is named twice.")
            tables.add(other)
            self.take("op", "|")
        self.take_word("where")
        condition = self.disjunction()
        columns: tuple[str, ...] = COLUMNS
        descending: bool | None = None
        while self.peek() is not None:
            self.take("op", "|")
            operator = self.take_word("project", "order")
            if operator == "project":
                columns = self.columns()
            else:
                self.take_word("by")
                self.take_word("id")
                descending = self.take_word("asc", "desc") == "desc"
        return tables, condition, columns, descending

    def columns(self) -> tuple[str, ...]:
        names = [self.take_word(*COLUMNS)]
        while self.peek() == ("op", ","):
            self.take("op", ",")
            names.append(self.take_word(*COLUMNS))
        by_lower = {column.lower(): column for column in COLUMNS}
        return tuple(by_lower[name] for name in names)

    def disjunction(self) -> Condition:
        parts = [self.conjunction()]
        while self.peek() == ("word", "or"):
            self.take("word", "or")
            parts.append(self.conjunction())
        predicates, plans = [p for p, _ in parts], [plan for _, plan in parts]

        def plan(index: inventory.Index) -> set[str] | None:
            found: set[str] = set()
            for each in plans:
                keys = each(index)
                if keys is None:
                    return None  # one side may match anything
                found |= keys
            return found

        return (lambda row: any(p(row) for p in predicates)), plan

    def conjunction(self) -> Condition:
        parts = [self.comparison()]
        while self.peek() == ("word", "and"):
            self.take("word", "and")
            parts.append(self.comparison())
        predicates, plans = [p for p, _ in parts], [plan for _, plan in parts]

        def plan(index: inventory.Index) -> set[str] | None:
            narrowed = [keys for keys in (each(index) for each in plans) if keys is not None]
            if not narrowed:
                return None
            return set.intersection(*narrowed)

        return (lambda row: all(p(row) for p in predicates)), plan

    def comparison(self) -> Condition:
        if self.peek() == ("op", "("):
            self.take("op", "(")
            inner = self.disjunction()
            self.take("op", ")")
            return inner
        column = self.take_word(*COLUMNS)
        if column == "tags":
            self.take("op", "[")
            key = _unquote(self.take("string"))
            self.take("op", "]")
            self.take("op", "=~")
            wanted = _unquote(self.take("string")).lower()
            return (
                lambda row: str((row.get("tags") or {}).get(key, "")).lower() == wanted,
                lambda index: set(index.by_tag.get((key, wanted), ())),
            )
        name = {c.lower(): c for c in COLUMNS}[column]
        operator = self.take("op")
        if operator == "in~":
            self.take("op", "(")
            values = {_unquote(self.take("string")).lower()}
            while self.peek() == ("op", ","):
                self.take("op", ",")
                values.add(_unquote(self.take("string")).lower())
            self.take("op", ")")
            return (
                lambda row: str(row.get(name, "")).lower() in values,
                lambda index: _plan(index, name, values),
            )
        value = _unquote(self.take("string"))
        if operator == "=~":
            return (
                lambda row: str(row.get(name, "")).lower() == value.lower(),
                lambda index: _plan(index, name, {value.lower()}),
            )
        if operator == "==":
            return (
                lambda row: str(row.get(name, "")) == value,
                lambda index: _plan(index, name, {value.lower()}),
            )
        raise QueryError(f"Operator {operator!r} is not supported after {name!r}.")


def _plan(index: inventory.Index, column: str, values: set[str]) -> set[str] | None:
    """The rows whose `column` may equal one of `values` (lower-cased), from the index."""
    if column == "id":
        return {value for value in values if value in index.by_id}
    by = {"subscriptionId": index.by_subscription, "resourceGroup": index.by_group}.get(column)
    if by is None:
        return None
    found: set[str] = set()
    for value in values:
        found |= by.get(value, set())
    return found


# --- the operation ---------------------------------------------------------------------------


def _token_for(offset: int, fingerprint: str) -> str:
    raw = json.dumps({"offset": offset, "query": fingerprint}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _offset_from(token: str, fingerprint: str) -> int:
    try:
        decoded = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        offset, query = int(decoded["offset"]), decoded["query"]
    except (ValueError, KeyError, TypeError):
        raise ArmError(400, "InvalidSkipToken", "The skip token is invalid.") from None
    if query != fingerprint or offset < 0:
        raise ArmError(400, "InvalidSkipToken", "The skip token belongs to another query.")
    return offset


def _options(body: dict[str, Any]) -> tuple[int, str | None, int]:
    options = body.get("options") or {}
    if not isinstance(options, dict):
        raise ArmError(400, "InvalidRequestContent", "'options' must be an object.")
    result_format = options.get("resultFormat", "objectArray")
    if result_format != "objectArray":
        raise ArmError(
            400,
            "InvalidRequestContent",
            f"resultFormat {result_format!r} is not served by the emulator (objectArray only).",
        )
    top = options.get("$top", TOP_DEFAULT)
    if isinstance(top, bool) or not isinstance(top, int) or not 1 <= top <= TOP_MAX:
        raise ArmError(400, "InvalidRequestContent", f"$top must be between 1 and {TOP_MAX}.")
    skip = options.get("$skip", 0)
    if isinstance(skip, bool) or not isinstance(skip, int) or skip < 0:
        raise ArmError(400, "InvalidRequestContent", "$skip must be 0 or more.")
    token = options.get("$skipToken")
    if token is not None and not isinstance(token, str):
        raise ArmError(400, "InvalidRequestContent", "$skipToken must be a string.")
    return top, token, skip


def _query(ctx: Context, request: Request) -> Response:
    body = arm.json_object(request)
    query = body.get("query")
    if not isinstance(query, str) or not query.strip():
        raise ArmError(400, "InvalidRequestContent", "'query' is required.")
    if body.get("managementGroups") or body.get("facets"):
        raise ArmError(
            400,
            "InvalidRequestContent",
            "managementGroups and facets are not served by the emulator.",
        )
    subscriptions = body.get("subscriptions")
    if subscriptions is not None and (
        not isinstance(subscriptions, list) or not all(isinstance(s, str) for s in subscriptions)
    ):
        raise ArmError(400, "InvalidRequestContent", "'subscriptions' must be a list of ids.")
    for subscription in subscriptions or []:
        arm.check_subscription(subscription)
    top, token, skip = _options(body)
    tables, (predicate, plan), columns, descending = _Parser(query).parse()
    allowed = {s.lower() for s in subscriptions} if subscriptions else None
    # Resource Graph answers from its own indexed store; the emulator narrows the rows with an
    # index by id, subscription, resource group and tag (inventory.Index) before it filters,
    # so 100,000 rows are not all read for a query about one team.
    index, extra = inventory.index(ctx)
    keys = plan(index)
    if keys is None and allowed is not None:
        keys = set().union(*(index.by_subscription.get(s, set()) for s in allowed))
    candidates = list(index.by_id.values()) if keys is None else [index.by_id[k] for k in keys]
    selected = [
        row
        for row in candidates + extra
        if ("resourcecontainers" if row["type"] in CONTAINER_TYPES else "resources") in tables
        and (allowed is None or row["subscriptionId"] in allowed)
        and predicate(row)
    ]
    selected.sort(key=lambda row: row["id"].lower(), reverse=bool(descending))
    fingerprint = hashlib.sha256(json.dumps([query, sorted(allowed or [])]).encode()).hexdigest()[
        :16
    ]
    offset = _offset_from(token, fingerprint) if token else skip
    chunk = selected[offset : offset + top]
    answer: dict[str, Any] = {
        "totalRecords": len(selected),
        "count": len(chunk),
        "resultTruncated": "false",
        "data": [{column: row.get(column) for column in columns} for row in chunk],
        "facets": [],
    }
    if offset + top < len(selected):
        answer["$skipToken"] = _token_for(offset + top, fingerprint)
    return json_response(200, answer)
