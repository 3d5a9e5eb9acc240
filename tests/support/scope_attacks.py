"""Scopes a hostile requester tries: each means something else to Azure than to the approver.

An ARM scope goes into the role assignment URL unescaped, so `..` segments (removed by the HTTP
client before sending), `?`/`#` (ending the path) and percent-encoding (decoding to either) let a
one-resource request land on a subscription or another resource.
"""

from __future__ import annotations

from tests.support.people import OTHER_SUBSCRIPTION
from tests.support.people import VAULT_SCOPE as VAULT

# (scope, rule): every attack a hostile requester tried on round 1's main.
ATTACKS = [
    (VAULT + "/../../../../../..", "scope_dot_segment"),
    (VAULT + "/../../../../../../../subscriptions/" + OTHER_SUBSCRIPTION, "scope_dot_segment"),
    (VAULT + "/./secrets/x", "scope_dot_segment"),
    (VAULT.replace("/providers/", "/./providers/"), "scope_dot_segment"),
    (VAULT + "/%2e%2e/%2e%2e", "scope_percent_encoding"),
    (VAULT + "%2F..%2F..", "scope_percent_encoding"),
    (VAULT + "%3Fx", "scope_percent_encoding"),
    (VAULT + "?api-version=x", "scope_forbidden_character"),
    (VAULT + "#frag", "scope_forbidden_character"),
    (VAULT + "\\..\\..", "scope_forbidden_character"),
    (VAULT + "\x00", "scope_forbidden_character"),
    (VAULT + "\r\nX-Injected: 1", "scope_forbidden_character"),
    (VAULT.replace("kv-payments", "kv payments"), "scope_forbidden_character"),
    (VAULT + "\u200b", "scope_forbidden_character"),
    (VAULT + "/x" * 1000, "scope_too_long"),
]
