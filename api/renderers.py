"""Representations besides JSON: problem+json, the YAML hand-over, and the audit export formats."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml
from rest_framework.renderers import BaseRenderer, JSONRenderer

from api.problems import PROBLEM_MEDIA_TYPE


class ProblemJSONRenderer(JSONRenderer):
    media_type = PROBLEM_MEDIA_TYPE
    format = "problem+json"


class YamlRenderer(BaseRenderer):
    """Text that already is YAML (a manifest bundle) passes through; anything else is dumped."""

    media_type = "application/yaml"
    format = "yaml"
    charset = "utf-8"

    def render(
        self,
        data: Any,
        accepted_media_type: str | None = None,
        renderer_context: Mapping[str, Any] | None = None,
    ) -> bytes:
        if data is None:
            return b""
        if isinstance(data, str):
            return data.encode("utf-8")
        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True).encode("utf-8")


class JsonLinesRenderer(BaseRenderer):
    """Declares the export's JSON Lines media type for content negotiation; the view streams."""

    media_type = "application/jsonl"
    format = "jsonl"
    charset = "utf-8"

    def render(
        self,
        data: Any,
        accepted_media_type: str | None = None,
        renderer_context: Mapping[str, Any] | None = None,
    ) -> bytes:
        return JSONRenderer().render(data) + b"\n"


class CsvRenderer(BaseRenderer):
    """Declares the export's CSV media type for content negotiation; the view streams."""

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(
        self,
        data: Any,
        accepted_media_type: str | None = None,
        renderer_context: Mapping[str, Any] | None = None,
    ) -> bytes:
        return str(data).encode("utf-8")
