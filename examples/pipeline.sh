#!/usr/bin/env bash
# Request a workload identity for one app, wait for approval and provisioning, print its manifests.
#
#   PORTAL_API=https://portal.example.com/api/v1 PORTAL_TOKEN=wip_… \
#     examples/pipeline.sh request.json > manifests.yaml && kubectl apply -f manifests.yaml
#
# request.json is the body of POST /api/v1/identity-requests/ (see the README). The script asks
# for it with find-or-create (POST …/ensure/): a re-run of the pipeline finds the request or the
# identity the first run filed instead of being refused. It then long-polls the request
# (Prefer: wait) until it is ready, and prints the ServiceAccount + Deployment YAML on stdout.
# Progress and errors go to stderr; a refusal prints the portal's problem document, field by field.
#
# Credentials: PORTAL_TOKEN (a portal API token), or PORTAL_TOKEN_COMMAND: a command that prints
# a fresh token, run before every call: a CI system's own OIDC token that a trust rule accepts
# (each is good for one call; see examples/github-actions.yml and examples/azure-pipelines.yml).
#
# Environment: PORTAL_API, and PORTAL_TOKEN or PORTAL_TOKEN_COMMAND (required);
# PORTAL_TIMEOUT_SECONDS (total, default 3600: approval is a person); PORTAL_WAIT_SECONDS (one
# long-poll, default 55); IMAGE (the container image put into the Deployment); CI_PIPELINE_ID or
# GITHUB_RUN_ID (the Idempotency-Key's suffix).
#
# Exit codes:
#   0  the request is ready; the manifests are on stdout
#   1  usage: a variable or the request file is missing
#   2  the portal refused (4xx); its problem document is on stderr
#   3  the request ended rejected, cancelled or failed (the reason is on stderr)
#   4  PORTAL_TIMEOUT_SECONDS passed before the request was ready (re-run to wait on; nothing
#      is filed twice)
#   5  the portal could not be reached, or answered 5xx, until the timeout
set -euo pipefail

usage() { echo "pipeline.sh: $1" >&2; exit 1; }
[[ -n "${PORTAL_API:-}" ]] || usage "set PORTAL_API, e.g. https://portal.example.com/api/v1"
[[ -n "${PORTAL_TOKEN:-}" || -n "${PORTAL_TOKEN_COMMAND:-}" ]] \
  || usage "set PORTAL_TOKEN (an API token with scopes read,request) or PORTAL_TOKEN_COMMAND"
[[ $# -ge 1 && -r "$1" ]] || usage "usage: pipeline.sh request.json (a readable file)"
for tool in curl jq; do
  command -v "$tool" >/dev/null || usage "$tool is required"
done

API="${PORTAL_API%/}"
BODY_FILE="$1"
TIMEOUT="${PORTAL_TIMEOUT_SECONDS:-3600}"
WAIT="${PORTAL_WAIT_SECONDS:-55}"
RUN="${CI_PIPELINE_ID:-${GITHUB_RUN_ID:-local-$(date +%s)}}"
KEY="ensure-$(basename "$BODY_FILE" .json)-$RUN"
DEADLINE=$(( $(date +%s) + TIMEOUT ))
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

# call METHOD PATH [curl options…]: the answer's body goes to $WORK/body, its status to STATUS.
# No `curl -f`: on an error the body is the problem document, and we want to show it.
call() {
  local method="$1" path="$2"
  shift 2
  local remaining=$(( DEADLINE - $(date +%s) ))
  (( remaining > 0 )) || { echo "timed out after ${TIMEOUT}s" >&2; exit 4; }
  local token="${PORTAL_TOKEN:-}"
  if [[ -n "${PORTAL_TOKEN_COMMAND:-}" ]]; then
    token=$(bash -c "$PORTAL_TOKEN_COMMAND") && [[ -n "$token" ]] \
      || { echo "PORTAL_TOKEN_COMMAND printed no token" >&2; exit 1; }
  fi
  if ! STATUS=$(curl -sS -o "$WORK/body" -D "$WORK/headers" -w '%{http_code}' -X "$method" \
      --max-time $(( WAIT + 30 )) -H "Authorization: Bearer $token" "$@" "$API$path"); then
    STATUS=000  # no answer at all (DNS, TLS, connection refused): retried below like a 5xx
  fi
}

# The problem document (RFC 9457) on stderr: title, detail, one line per field, what it met.
show_problem() {
  echo "$1 answered HTTP $STATUS:" >&2
  jq -r '
    "  \(.title // "error"): \(.detail // "")",
    (.errors // [] | .[] | "  \(.field): \(.message) [\(.rule)]"),
    (if .existing then "  existing: \(.existing.links.identity_request)" else empty end)
  ' "$WORK/body" >&2 2>/dev/null || cat "$WORK/body" >&2
}

# call, retrying while the portal is unreachable, throttled (429) or failing (5xx), or still
# running an earlier attempt with the same Idempotency-Key (409 idempotency-key-in-use), until
# the deadline; any other 4xx is final.
call_retrying() {
  local delay=2
  while true; do
    call "$@"
    case "$STATUS" in
      000 | 429 | 5??) ;;
      409) jq -e '.type | endswith(":idempotency-key-in-use")' "$WORK/body" >/dev/null 2>&1 \
             || return 0 ;;
      *) return 0 ;;
    esac
    if (( $(date +%s) + delay >= DEADLINE )); then
      show_problem "$1 $2"
      echo "the portal was unreachable or failing (HTTP $STATUS) until the timeout" >&2
      exit 5
    fi
    echo "HTTP $STATUS from $1 $2; retrying in ${delay}s" >&2
    sleep "$delay"
    delay=$(( delay * 2 > 60 ? 60 : delay * 2 ))
  done
}

# 1. Find or file the request. The same key on a retry of this call replays its first answer.
call_retrying POST /identity-requests/ensure/ -H "Content-Type: application/json" \
  -H "Idempotency-Key: $KEY" --data-binary "@$BODY_FILE"
if [[ "$STATUS" != 200 && "$STATUS" != 201 ]]; then
  show_problem "POST $API/identity-requests/ensure/"
  exit 2
fi
ID="$(jq -r '.id // empty' "$WORK/body")"
[[ "$ID" =~ ^[0-9]+$ ]] || { echo "no request id in the answer:" >&2; cat "$WORK/body" >&2; exit 2; }
echo "request $ID: $(jq -r '.outcome' "$WORK/body"), $(jq -r '.status' "$WORK/body")" >&2

# 2. Wait until it is ready, long-polling: each call returns as soon as the status changes.
while true; do
  STATE="$(jq -r '.status' "$WORK/body")"
  case "$STATE" in
    ready) break ;;
    rejected | cancelled | failed)
      reason="$(jq -r '[.last_error, (.approvals[]? | select(.decision == "reject") | .comment)]
        | map(select(. != null and . != "")) | join("; ")' "$WORK/body")"
      echo "request $ID is $STATE: $reason" >&2
      exit 3 ;;
  esac
  remaining=$(( DEADLINE - $(date +%s) ))
  (( remaining > 0 )) || { echo "request $ID is still $STATE after ${TIMEOUT}s" >&2; exit 4; }
  wait=$(( remaining < WAIT ? remaining : WAIT ))
  call_retrying GET "/identity-requests/$ID/?since=$STATE" -H "Prefer: wait=$wait"
  [[ "$STATUS" == 200 ]] || { show_problem "GET $API/identity-requests/$ID/"; exit 2; }
  NEW_STATE="$(jq -r '.status' "$WORK/body")"
  if [[ "$NEW_STATE" != "$STATE" ]]; then
    echo "request $ID: $NEW_STATE" >&2
  else
    # A line per unchanged poll, so a CI log shows the wait is alive (and what it waits for).
    echo "request $ID: still $STATE after $(( TIMEOUT - DEADLINE + $(date +%s) ))s" >&2
    # No Preference-Applied: the portal did not hold the call (too many waits at once) and
    # answered at once; pause rather than ask again straight away.
    grep -qi '^preference-applied:' "$WORK/headers" 2>/dev/null || sleep 5
  fi
done

# 3. The manifests, with the image if one was given.
query="format=yaml"
[[ -z "${IMAGE:-}" ]] || query="$query&image=$(jq -rn --arg v "$IMAGE" '$v | @uri')"
call_retrying GET "/identity-requests/$ID/manifests/?$query"
[[ "$STATUS" == 200 ]] || { show_problem "GET $API/identity-requests/$ID/manifests/"; exit 2; }
cat "$WORK/body"
