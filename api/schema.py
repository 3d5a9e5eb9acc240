"""OpenAPI generation (drf-spectacular): every operation documents its problem responses and,
for POSTs, the Idempotency-Key header; the examples the operations share live here."""

from __future__ import annotations

from typing import Any

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse

from api.idempotency import HEADER, KEY_MAX_LENGTH, REPLAYED_HEADER, is_idempotent
from api.problems import PROBLEM_MEDIA_TYPE, TYPE_PREFIX, ProblemSerializer

IDEMPOTENCY_PARAMETER = OpenApiParameter(
    name=HEADER,
    type={"type": "string", "minLength": 1, "maxLength": KEY_MAX_LENGTH, "pattern": r"^\S.*$"},
    location=OpenApiParameter.HEADER,
    required=False,
    description="Any unique string (a UUID). Retrying with the same key and body returns the "
    f"first response (with `{REPLAYED_HEADER}: true`) instead of acting twice; the same key "
    "with a different body is a 422. Kept for 24 hours.",
)


def _problem_example(slug: str, status: int, title: str, detail: str, **extra: Any) -> Any:
    return OpenApiExample(
        slug,
        value={
            "type": TYPE_PREFIX + slug,
            "title": title,
            "status": status,
            "detail": detail,
            "instance": "/api/v1/identity-requests/42/approve/",
            **extra,
        },
        response_only=True,
        status_codes=[str(status)],
    )


POLICY_VIOLATION_EXAMPLE = _problem_example(
    "policy-violation",
    400,
    "The request breaks the identity policy.",
    "Fix the fields listed in errors and submit again.",
    errors=[
        {
            "field": "namespace",
            "pointer": "#/namespace",
            "rule": "namespace_not_owned",
            "message": "Team 'payments' does not own namespace 'search' on cluster 'aks-prod'.",
        },
        {
            "field": "roles[0].scope",
            "pointer": "#/roles/0/scope",
            "rule": "broad_scope",
            "message": "Resource group scopes need an exception approved by two approvers.",
        },
    ],
    warnings=[],
)

_ERRORS: dict[int, tuple[str, list[Any]]] = {
    400: (
        "Invalid input: problem details with one entry per field in `errors`.",
        [
            POLICY_VIOLATION_EXAMPLE,
            _problem_example(
                "validation-error",
                400,
                "The request body or parameters are invalid.",
                "Fix the fields listed in errors and submit again.",
                errors=[
                    {
                        "field": "comment",
                        "pointer": "#/comment",
                        "rule": "required",
                        "message": "This field is required.",
                    }
                ],
            ),
        ],
    ),
    401: (
        "No credentials, or the token is malformed, unknown, expired or revoked.",
        [
            _problem_example(
                "unauthenticated", 401, "Authentication is required.", "The token has expired."
            )
        ],
    ),
    403: (
        "Authenticated, but the role, the team or the token's scopes do not allow this.",
        [
            _problem_example(
                "forbidden",
                403,
                "You may not do this.",
                "Requesters cannot approve their own requests.",
            )
        ],
    ),
    404: (
        "Unknown, or not visible to you (the two are indistinguishable).",
        [_problem_example("not-found", 404, "Not found.", "Identity request 42 was not found.")],
    ),
    409: (
        "The object's state does not allow this now (or the Idempotency-Key is in use).",
        [
            _problem_example(
                "conflict",
                409,
                "The object is not in a state that allows this.",
                "request 42 is no longer pending (now approved).",
            )
        ],
    ),
    406: ("The representation asked for (Accept or ?format=) is not offered here.", []),
    415: ("The body must be application/json.", []),
    422: (
        "The Idempotency-Key was already used with a different request.",
        [
            _problem_example(
                "idempotency-key-reused",
                422,
                "This Idempotency-Key was used with a different request.",
                "The Idempotency-Key 'deploy-42' was already used with a different request "
                "(method, path or body). Use a new key for a new request.",
            )
        ],
    ),
    429: (
        "Rate limit reached; wait for Retry-After seconds.",
        [_problem_example("throttled", 429, "Too many requests.", "Request was throttled.")],
    ),
}


class ApiAutoSchema(AutoSchema):
    """drf-spectacular's AutoSchema plus the problem responses every operation can give."""

    def _error_codes(self) -> list[int]:
        codes = [400, 401, 403, 404, 406, 429]
        if self.method == "POST":
            codes += [409, 415]
            if is_idempotent(getattr(self.view, "post", None)):
                codes.append(422)
        return sorted(codes)

    def _get_response_bodies(self, direction: Any = "response") -> dict[str, Any]:
        responses: dict[str, Any] = super()._get_response_bodies(direction)
        for code in self._error_codes():
            if str(code) in responses:
                continue
            description, examples = _ERRORS[code]
            responses[str(code)] = self._get_response_for_code(
                OpenApiResponse(ProblemSerializer, description=description, examples=examples),
                str(code),
                media_types=[PROBLEM_MEDIA_TYPE],
                direction=direction,
            )
        return responses

    def get_serializer_name(self, serializer: Any, direction: Any) -> str:
        # Input/Output serializers nested in views share names; prefix the view's name.
        qualname = type(serializer).__qualname__
        if "." in qualname:
            outer, inner = qualname.rsplit(".", 1)
            return outer.removesuffix("View").replace(".", "") + inner
        return str(super().get_serializer_name(serializer, direction))

    def get_override_parameters(self) -> list[Any]:
        parameters = list(super().get_override_parameters())
        if self.method == "POST" and is_idempotent(getattr(self.view, "post", None)):
            parameters.append(IDEMPOTENCY_PARAMETER)
        return parameters


__all__ = ["IDEMPOTENCY_PARAMETER", "POLICY_VIOLATION_EXAMPLE", "ApiAutoSchema", "OpenApiTypes"]
