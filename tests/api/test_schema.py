"""The OpenAPI schema: valid, complete (summaries, examples, problem responses), docs without a
CDN. Schemathesis fuzzes the live API against it in tests/security/test_api_fuzzing.py."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.validation import validate_schema

pytestmark = pytest.mark.django_db

METHODS = ("get", "post", "put", "patch", "delete")


@pytest.fixture
def openapi() -> dict[str, Any]:
    return SchemaGenerator().get_schema(request=None, public=True)


def operations(openapi: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in openapi["paths"].items():
        for method in METHODS:
            if method in item:
                yield path, method, item[method]


def test_the_schema_is_valid_openapi_3_and_covers_the_api(openapi: dict[str, Any]) -> None:
    validate_schema(openapi)
    assert openapi["openapi"].startswith("3.")
    assert all(path.startswith("/api/v1/") for path in openapi["paths"])
    assert "/api/v1/identity-requests/{id}/manifests/" in openapi["paths"]
    schemes = openapi["components"]["securitySchemes"]
    assert schemes["tokenAuth"] == {**schemes["tokenAuth"], "type": "http", "scheme": "bearer"}


def test_every_operation_has_a_summary_an_example_and_problem_responses(
    openapi: dict[str, Any],
) -> None:
    missing = []
    for path, method, operation in operations(openapi):
        where = f"{method.upper()} {path}"
        if not operation.get("summary"):
            missing.append(f"{where}: summary")
        contents = [operation.get("requestBody", {}).get("content", {})] + [
            response.get("content", {})
            for code, response in operation["responses"].items()
            if code.startswith("2")
        ]
        if not any("examples" in media for content in contents for media in content.values()):
            missing.append(f"{where}: example")
        for code in ("400", "401", "403", "404", "429"):
            content = operation["responses"].get(code, {}).get("content", {})
            if "application/problem+json" not in content:
                missing.append(f"{where}: {code} problem")
        if method == "post":
            headers = {p["name"] for p in operation.get("parameters", []) if p["in"] == "header"}
            if "Idempotency-Key" not in headers or "422" not in operation["responses"]:
                missing.append(f"{where}: Idempotency-Key")
    assert missing == []


def test_the_schema_is_served_to_anyone(api_client: Any) -> None:
    response = api_client.get("/api/schema/")
    assert response.status_code == 200
    assert yaml.safe_load(response.content)["info"]["title"] == "Workload Identity Portal API"


def test_the_docs_are_served_without_any_cdn(api_client: Any) -> None:
    response = api_client.get("/api/docs/")
    html = response.content.decode()
    assert response.status_code == 200
    assert "swagger-ui" in html
    assert "/static/drf_spectacular_sidecar/" in html
    for cdn in ("cdn.jsdelivr.net", "unpkg.com", "cdnjs", "googleapis"):
        assert cdn not in html
