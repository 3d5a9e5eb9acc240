"""ServiceAccount writes with server-side-apply field ownership, reduced to what an SA has.

Owned fields are labels, annotations (per key) and the top-level ``automountServiceAccountToken``,
``imagePullSecrets`` and ``secrets``. An apply sets every field in its configuration, removes
fields its manager applied before but left out now (unless another manager also owns them) and
refuses, with 409 Conflict, to change a field another manager owns unless ``force=true``.
"""

from __future__ import annotations

import copy
import datetime as dt
import re
import uuid
from typing import Any

from azure_emulator.protocol import KubeError

TOP_LEVEL_FIELDS = ("automountServiceAccountToken", "imagePullSecrets", "secrets")
_SUBDOMAIN = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
_QUALIFIED = r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_LABEL_VALUE = r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?"
_MISSING = object()


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _invalid(name: str, field: str, value: Any, reason: str) -> KubeError:
    message = f'ServiceAccount "{name}" is invalid: {field}: Invalid value: "{value}": {reason}'
    causes = [{"reason": "FieldValueInvalid", "message": reason, "field": field}]
    return KubeError(
        422, "Invalid", message, {"name": name, "kind": "ServiceAccount", "causes": causes}
    )


def validate_new_name(namespace: str, name: str) -> None:
    """A new ServiceAccount's name must be a DNS-1123 subdomain (at most 253 characters)."""
    if len(name) > 253 or not re.fullmatch(_SUBDOMAIN, name):
        raise _invalid(
            name,
            "metadata.name",
            name,
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
            "'-' or '.', and must start and end with an alphanumeric character (e.g. "
            f"'example.com', regex used for validation is '{_SUBDOMAIN}')",
        )


def _valid_key(key: str) -> bool:
    prefix, _, rest = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not re.fullmatch(_SUBDOMAIN, prefix)):
        return False
    return 0 < len(rest) <= 63 and bool(re.fullmatch(_QUALIFIED, rest))


def _string_map(name: str, field: str, raw: Any, *, label_values: bool) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise _invalid(name, field, raw, "must be a map of strings")
    for key, value in raw.items():
        if not isinstance(value, str):
            raise _invalid(name, f"{field}.{key}", value, "must be a string")
        if not _valid_key(key):
            raise _invalid(
                name,
                field,
                key,
                "name part must consist of alphanumeric characters, '-', '_' or '.', and must "
                "start and end with an alphanumeric character (at most 63 characters)",
            )
        if label_values and (len(value) > 63 or not re.fullmatch(_LABEL_VALUE, value)):
            raise _invalid(
                name,
                f"{field}",
                value,
                "a valid label must be an empty string or consist of alphanumeric characters, "
                "'-', '_' or '.', and must start and end with an alphanumeric character "
                f"(regex used for validation is '{_LABEL_VALUE}')",
            )
    return dict(raw)


def _desired(namespace: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
    """The fields an apply configuration sets, keyed by owned-field path."""
    if body.get("apiVersion") != "v1" or body.get("kind") != "ServiceAccount":
        raise KubeError(
            400,
            "BadRequest",
            f"invalid object type: {body.get('apiVersion', '')}, Kind={body.get('kind', '')}",
        )
    metadata = body.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise KubeError(400, "BadRequest", "metadata must be an object")
    if metadata.get("name") != name:
        raise KubeError(
            400,
            "BadRequest",
            f"the name of the object ({metadata.get('name')}) does not match the name on the URL "
            f"({name})",
        )
    if metadata.get("namespace") not in (None, namespace):
        raise KubeError(
            400,
            "BadRequest",
            "the namespace of the provided object does not match the namespace sent on the request",
        )
    desired: dict[str, Any] = {}
    for section, label_values in (("labels", True), ("annotations", False)):
        values = _string_map(
            name, f"metadata.{section}", metadata.get(section), label_values=label_values
        )
        desired.update({f"{section}:{key}": value for key, value in values.items()})
    for field in TOP_LEVEL_FIELDS:
        if field in body:
            desired[f"field:{field}"] = body[field]
    return desired


def _get(obj: dict[str, Any], path: str) -> Any:
    section, key = path.split(":", 1)
    if section == "field":
        return obj.get(key, _MISSING)
    return obj["metadata"].get(section, {}).get(key, _MISSING)


def _set(obj: dict[str, Any], path: str, value: Any) -> None:
    section, key = path.split(":", 1)
    if section == "field":
        obj[key] = value
    else:
        obj["metadata"].setdefault(section, {})[key] = value


def _delete(obj: dict[str, Any], path: str) -> None:
    section, key = path.split(":", 1)
    if section == "field":
        obj.pop(key, None)
        return
    values = obj["metadata"].get(section, {})
    values.pop(key, None)
    if not values:
        obj["metadata"].pop(section, None)


def _field_label(path: str) -> str:
    section, key = path.split(":", 1)
    return f".{key}" if section == "field" else f".metadata.{section}.{key}"


def _new(namespace: str, name: str) -> dict[str, Any]:
    return {
        "object": {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "uid": str(uuid.uuid4()),
                "resourceVersion": "0",
                "creationTimestamp": _now(),
            },
        },
        "owners": {},
        "managers": {},
    }


def _touch(stored: dict[str, Any], manager: str, operation: str, before: dict[str, Any]) -> None:
    stored["managers"][manager] = {"operation": operation, "time": _now()}
    if stored["object"] != before:
        metadata = stored["object"]["metadata"]
        metadata["resourceVersion"] = str(int(metadata["resourceVersion"]) + 1)


def apply(
    stored: dict[str, Any] | None,
    namespace: str,
    name: str,
    body: dict[str, Any],
    manager: str,
    force: bool,
) -> tuple[dict[str, Any], bool]:
    """Server-side apply of ``body`` by ``manager``: ``(new stored record, created)``."""
    desired = _desired(namespace, name, body)
    created = stored is None
    record = _new(namespace, name) if stored is None else copy.deepcopy(stored)
    obj, owners = record["object"], record["owners"]
    before = copy.deepcopy(obj)
    conflicts = [
        (path, other)
        for path, value in desired.items()
        for other in owners.get(path, [])
        if other != manager and _get(obj, path) != value
    ]
    if conflicts and not force:
        lines = [
            f'conflict with "{other}" using v1: {_field_label(path)}' for path, other in conflicts
        ]
        noun = "conflict" if len(lines) == 1 else "conflicts"
        raise KubeError(
            409,
            "Conflict",
            f"Apply failed with {len(lines)} {noun}: {'; '.join(lines)}",
            {
                "causes": [
                    {
                        "reason": "FieldManagerConflict",
                        "message": f'conflict with "{o}"',
                        "field": _field_label(p),
                    }
                    for p, o in conflicts
                ]
            },
        )
    for path in [p for p, managers in owners.items() if manager in managers and p not in desired]:
        owners[path].remove(manager)
        if not owners[path]:
            del owners[path]
            _delete(obj, path)
    for path, value in desired.items():
        _set(obj, path, value)
        current = [m for m in owners.get(path, []) if not force or m == manager]
        owners[path] = sorted({*current, manager})
    _touch(record, manager, "Apply", before)
    if created:
        record["object"]["metadata"]["resourceVersion"] = "1"
    return record, created


def merge_patch(stored: dict[str, Any], body: dict[str, Any], manager: str) -> dict[str, Any]:
    """A JSON merge patch (RFC 7386) on labels, annotations and the top-level fields.

    The patching manager becomes the sole owner of every field it set (an Update takes
    ownership without conflicts, as in Kubernetes).
    """
    record = copy.deepcopy(stored)
    obj, owners = record["object"], record["owners"]
    before = copy.deepcopy(obj)
    name = obj["metadata"]["name"]
    metadata = body.get("metadata") or {}
    changes: dict[str, Any] = {}
    for section in ("labels", "annotations"):
        patch = metadata.get(section) if isinstance(metadata, dict) else None
        if isinstance(patch, dict):
            present = {k: v for k, v in patch.items() if v is not None}
            _string_map(name, f"metadata.{section}", present, label_values=section == "labels")
            changes.update({f"{section}:{k}": v for k, v in patch.items()})
    changes.update({f"field:{f}": body[f] for f in TOP_LEVEL_FIELDS if f in body})
    for path, value in changes.items():
        if value is None:
            _delete(obj, path)
            owners.pop(path, None)
        else:
            _set(obj, path, value)
            owners[path] = [manager]
    _touch(record, manager, "Update", before)
    return record


def render(stored: dict[str, Any]) -> dict[str, Any]:
    """The ServiceAccount as the API returns it, with managedFields built from the owners."""
    obj = copy.deepcopy(stored["object"])
    fields_by_manager: dict[str, dict[str, Any]] = {}
    for path, managers in stored["owners"].items():
        section, key = path.split(":", 1)
        for manager in managers:
            tree = fields_by_manager.setdefault(manager, {})
            if section == "field":
                tree[f"f:{key}"] = {}
            else:
                tree.setdefault("f:metadata", {}).setdefault(f"f:{section}", {})[f"f:{key}"] = {}
    obj["metadata"]["managedFields"] = [
        {
            "manager": manager,
            "operation": info["operation"],
            "apiVersion": "v1",
            "time": info["time"],
            "fieldsType": "FieldsV1",
            "fieldsV1": fields_by_manager.get(manager, {}),
        }
        for manager, info in sorted(stored["managers"].items())
    ]
    return obj
