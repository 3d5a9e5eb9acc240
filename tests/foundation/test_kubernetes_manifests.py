"""deploy/kubernetes: every manifest file and every rendered overlay validates strictly against
the Kubernetes 1.30 and newest schemas (kubernetes-validate), KEDA's objects against a schema
written from KEDA's documented fields, and the deployment says what the README promises: the
portal's own workload identity and no secret, probes, budgets, autoscalers, network policies,
migrations as a Job, resources on every container.

Overlays are rendered by a small kustomize subset below (resources, components, namespace,
images, strategic-merge patches); where kubectl is installed its own `kubectl kustomize` output
is validated too and must match ours.
"""

from __future__ import annotations

import copy
import importlib.util
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.support.services import REPO_ROOT

KUBERNETES = REPO_ROOT / "deploy" / "kubernetes"
OVERLAYS = sorted(path.parent for path in (KUBERNETES / "overlays").glob("*/kustomization.yaml"))
K8S_VERSIONS = ("1.30", kubernetes_validate.utils.latest_version())
PORTAL = "workload-identity-portal"
CLIENT_ID = "azure.workload.identity/client-id"
USE_LABEL = "azure.workload.identity/use"
GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
CLUSTER_SCOPED = {"Namespace"}

Doc = dict[str, Any]


def load_all(path: Path) -> list[Doc]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def manifest_files() -> list[Path]:
    """Every object file under deploy/kubernetes. Left out: kustomization files (kustomize's own
    configuration, not objects) and overlay patches (partial objects by design; they are
    validated inside the rendered overlays)."""
    return sorted(
        path
        for path in KUBERNETES.rglob("*.yaml")
        if path.name != "kustomization.yaml" and "patches" not in path.parts
    )


# --- KEDA (a CRD: not in the Kubernetes schemas) ------------------------------------------------
_META = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
        "namespace": {"type": "string"},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
    },
    "additionalProperties": False,
}
# From KEDA 2.x's documentation of ScaledObject (concepts/scaling-deployments) and
# TriggerAuthentication (concepts/authentication); every field not listed there is refused.
KEDA_SCHEMAS: dict[str, dict[str, Any]] = {
    "ScaledObject": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "additionalProperties": False,
        "properties": {
            "apiVersion": {"const": "keda.sh/v1alpha1"},
            "kind": {"const": "ScaledObject"},
            "metadata": _META,
            "spec": {
                "type": "object",
                "required": ["scaleTargetRef", "triggers"],
                "additionalProperties": False,
                "properties": {
                    "scaleTargetRef": {
                        "type": "object",
                        "required": ["name"],
                        "additionalProperties": False,
                        "properties": {
                            "apiVersion": {"type": "string"},
                            "kind": {"type": "string"},
                            "name": {"type": "string"},
                            "envSourceContainerName": {"type": "string"},
                        },
                    },
                    "pollingInterval": {"type": "integer", "minimum": 1},
                    "cooldownPeriod": {"type": "integer", "minimum": 0},
                    "initialCooldownPeriod": {"type": "integer", "minimum": 0},
                    "idleReplicaCount": {"type": "integer", "minimum": 0},
                    "minReplicaCount": {"type": "integer", "minimum": 0},
                    "maxReplicaCount": {"type": "integer", "minimum": 1},
                    "fallback": {
                        "type": "object",
                        "required": ["failureThreshold", "replicas"],
                        "additionalProperties": False,
                        "properties": {
                            "failureThreshold": {"type": "integer", "minimum": 1},
                            "replicas": {"type": "integer", "minimum": 0},
                        },
                    },
                    "advanced": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "restoreToOriginalReplicaCount": {"type": "boolean"},
                            "horizontalPodAutoscalerConfig": {
                                "type": "object",
                                "additionalProperties": False,
                                "properties": {
                                    "name": {"type": "string"},
                                    # autoscaling/v2 HPA behavior, checked by Kubernetes' schema
                                    # in test_keda_hpa_behavior_is_a_valid_hpa_behavior.
                                    "behavior": {"type": "object"},
                                },
                            },
                        },
                    },
                    "triggers": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "required": ["type", "metadata"],
                            "additionalProperties": False,
                            "properties": {
                                "type": {"type": "string"},
                                "name": {"type": "string"},
                                "metadata": {
                                    "type": "object",
                                    "additionalProperties": {"type": "string"},
                                },
                                "authenticationRef": {
                                    "type": "object",
                                    "required": ["name"],
                                    "additionalProperties": False,
                                    "properties": {
                                        "name": {"type": "string"},
                                        "kind": {
                                            "enum": [
                                                "TriggerAuthentication",
                                                "ClusterTriggerAuthentication",
                                            ]
                                        },
                                    },
                                },
                                "metricType": {"enum": ["AverageValue", "Value", "Utilization"]},
                                "useCachedMetrics": {"type": "boolean"},
                            },
                        },
                    },
                },
            },
        },
    },
    "TriggerAuthentication": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "additionalProperties": False,
        "properties": {
            "apiVersion": {"const": "keda.sh/v1alpha1"},
            "kind": {"const": "TriggerAuthentication"},
            "metadata": _META,
            "spec": {
                "type": "object",
                "additionalProperties": False,
                "minProperties": 1,
                "properties": {
                    "secretTargetRef": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["parameter", "name", "key"],
                            "additionalProperties": False,
                            "properties": {
                                "parameter": {"type": "string"},
                                "name": {"type": "string"},
                                "key": {"type": "string"},
                            },
                        },
                    },
                    "env": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["parameter", "name"],
                            "additionalProperties": False,
                            "properties": {
                                "parameter": {"type": "string"},
                                "name": {"type": "string"},
                                "containerName": {"type": "string"},
                            },
                        },
                    },
                    "podIdentity": {
                        "type": "object",
                        "required": ["provider"],
                        "additionalProperties": False,
                        "properties": {
                            "provider": {"enum": ["none", "azure-workload", "aws", "gcp"]},
                            "identityId": {"type": "string"},
                        },
                    },
                },
            },
        },
    },
}


def validate(doc: Doc) -> None:
    """Strict validation of one object: Kubernetes' schemas, or KEDA's for keda.sh objects."""
    if doc["apiVersion"].startswith("keda.sh/"):
        jsonschema.validate(doc, KEDA_SCHEMAS[doc["kind"]])
        return
    for version in K8S_VERSIONS:
        kubernetes_validate.validate(doc, version, strict=True)


# --- A kustomize subset -------------------------------------------------------------------------
def _merge(base: Any, patch: Any) -> Any:
    """Strategic merge as kustomize does it for the fields our patches touch: maps merge, lists
    of named items (containers, env) merge by name, other lists are replaced."""
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = dict(base)
        for key, value in patch.items():
            merged[key] = _merge(base[key], value) if key in base else value
        return merged
    if (
        isinstance(base, list)
        and isinstance(patch, list)
        and all(isinstance(item, dict) and "name" in item for item in base + patch)
    ):
        patches = {item["name"]: item for item in patch}
        names = {item["name"] for item in base}
        merged_list = [
            _merge(item, patches[item["name"]]) if item["name"] in patches else item
            for item in base
        ]
        return merged_list + [item for item in patch if item["name"] not in names]
    return copy.deepcopy(patch)


def _pod_spec(doc: Doc) -> Doc | None:
    if doc["kind"] in {"Deployment", "StatefulSet", "DaemonSet", "Job"}:
        return doc["spec"]["template"]["spec"]
    return None


def render(directory: Path) -> list[Doc]:
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    docs: list[Doc] = []
    for entry in kustomization.get("resources", []):
        path = directory / entry
        docs += render(path) if path.is_dir() else load_all(path)
    for entry in kustomization.get("components", []):
        docs += render(directory / entry)
    for patch_entry in kustomization.get("patches", []):
        for patch in load_all(directory / patch_entry["path"]):
            targets = [
                i
                for i, doc in enumerate(docs)
                if (doc["kind"], doc["metadata"]["name"])
                == (patch["kind"], patch["metadata"]["name"])
            ]
            assert len(targets) == 1, f"patch {patch_entry['path']} matches {len(targets)}"
            docs[targets[0]] = _merge(docs[targets[0]], patch)
    images = {image["name"]: image for image in kustomization.get("images", [])}
    for doc in docs:
        spec = _pod_spec(doc)
        for container in (spec or {}).get("containers", []):
            name = container["image"].rsplit(":", 1)[0]
            if name in images:
                image = images[name]
                container["image"] = f"{image.get('newName', name)}:{image['newTag']}"
    if "namespace" in kustomization:
        for doc in docs:
            if doc["kind"] == "Namespace":
                doc["metadata"]["name"] = kustomization["namespace"]
            else:
                doc["metadata"]["namespace"] = kustomization["namespace"]
    return docs


def by_kind(docs: list[Doc], kind: str) -> dict[str, Doc]:
    return {doc["metadata"]["name"]: doc for doc in docs if doc["kind"] == kind}


def _key(doc: Doc) -> tuple[str, str]:
    return doc["kind"], doc["metadata"]["name"]


# --- Validation ---------------------------------------------------------------------------------
@pytest.mark.parametrize("path", manifest_files(), ids=lambda p: str(p.relative_to(KUBERNETES)))
def test_every_manifest_file_validates_strictly(path: Path) -> None:
    docs = load_all(path)
    assert docs, f"{path} holds no object"
    for doc in docs:
        validate(doc)


@pytest.mark.parametrize("overlay", OVERLAYS, ids=lambda p: p.name)
def test_every_rendered_overlay_validates_strictly(overlay: Path) -> None:
    docs = render(overlay)
    assert len({_key(doc) for doc in docs}) == len(docs), "two objects share a kind and name"
    for doc in docs:
        validate(doc)


@pytest.mark.parametrize("overlay", OVERLAYS, ids=lambda p: p.name)
def test_kubectl_kustomize_renders_the_same_objects(overlay: Path) -> None:
    """The subset above is kustomize's behaviour: checked against the real one where present."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed; the overlays are rendered by the subset only")
    result = subprocess.run(
        [kubectl, "kustomize", str(overlay)], capture_output=True, text=True, check=True
    )
    theirs = sorted(yaml.safe_load_all(result.stdout), key=_key)
    for doc in theirs:
        validate(doc)
    assert theirs == sorted(render(overlay), key=_key)


def test_the_validators_really_refuse_a_wrong_field() -> None:
    [web] = [d for d in load_all(KUBERNETES / "base" / "web.yaml") if d["kind"] == "Deployment"]
    web["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["paht"] = "/x"
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(web)
    [scaled, _auth] = load_all(KUBERNETES / "components" / "keda" / "scaledobject.yaml")
    scaled["spec"]["triggers"][0]["metadata"]["listLength"] = 10  # KEDA wants strings
    with pytest.raises(jsonschema.ValidationError):
        validate(scaled)
    scaled["spec"]["triggers"][0]["metadata"]["listLength"] = "10"
    scaled["spec"]["maxReplicas"] = 10  # the HPA's name, not KEDA's
    with pytest.raises(jsonschema.ValidationError):
        validate(scaled)


def test_keda_hpa_behavior_is_a_valid_hpa_behavior() -> None:
    [scaled, _auth] = load_all(KUBERNETES / "components" / "keda" / "scaledobject.yaml")
    behavior = scaled["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    hpa = load_all(KUBERNETES / "base" / "web-autoscaler.yaml")[0]
    hpa["spec"]["behavior"] = behavior
    validate(hpa)


# --- What the deployment promises -----------------------------------------------------------------
def workloads(docs: list[Doc]) -> dict[str, Doc]:
    return {**by_kind(docs, "Deployment"), **by_kind(docs, "Job")}


@pytest.mark.parametrize("overlay", OVERLAYS, ids=lambda p: p.name)
def test_the_portal_runs_as_its_own_workload_identity(overlay: Path) -> None:
    docs = render(overlay)
    account = by_kind(docs, "ServiceAccount")[PORTAL]
    client_id = account["metadata"]["annotations"][CLIENT_ID]
    assert GUID.match(client_id) and set(client_id) != set("0-"), "the overlay sets its identity"
    assert set(workloads(docs)) == {"portal-web", "portal-worker", "portal-beat", "portal-migrate"}
    for name, doc in workloads(docs).items():
        template = doc["spec"]["template"]
        assert template["metadata"]["labels"][USE_LABEL] == "true", name
        assert USE_LABEL not in doc["metadata"].get("labels", {}), name
        assert template["spec"]["serviceAccountName"] == PORTAL, name


def test_no_secret_is_in_the_deployment() -> None:
    text = "\n".join(path.read_text() for path in sorted(KUBERNETES.rglob("*.yaml")))
    assert not re.search(r"(?i)client[_-]?secret|AZURE_CLIENT_CERTIFICATE|password:\s*\S", text)
    for path in KUBERNETES.rglob("*.yaml"):
        for doc in load_all(path):
            assert doc.get("kind") != "Secret", f"{path} holds a Secret"
            for key in ("data", "stringData"):
                if doc.get("kind") == "ConfigMap":
                    for name in doc.get(key, {}):
                        assert not re.search(r"(?i)secret|password|token|database_url", name)


@pytest.mark.parametrize("overlay", OVERLAYS, ids=lambda p: p.name)
def test_every_container_runs_unprivileged_with_requests_and_limits(overlay: Path) -> None:
    for name, doc in workloads(render(overlay)).items():
        spec = doc["spec"]["template"]["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["automountServiceAccountToken"] is False, name
        for container in spec["containers"]:
            resources = container["resources"]
            for part in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources[part]), (name, part)
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["capabilities"]["drop"] == ["ALL"], name


@pytest.mark.parametrize("overlay", OVERLAYS, ids=lambda p: p.name)
def test_probes_budgets_autoscalers_and_the_migration_job(overlay: Path) -> None:
    docs = render(overlay)
    deployments = by_kind(docs, "Deployment")
    web = deployments["portal-web"]["spec"]["template"]["spec"]["containers"][0]
    assert web["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert web["readinessProbe"]["httpGet"]["path"] == "/readyz"
    worker = deployments["portal-worker"]["spec"]["template"]["spec"]["containers"][0]
    # The pool's liveness file, not `celery inspect ping` (answered even with a wedged pool).
    assert worker["livenessProbe"]["exec"]["command"] == ["python", "-m", "portal.worker_probe"]
    assert importlib.util.find_spec("portal.worker_probe") is not None
    assert deployments["portal-beat"]["spec"]["replicas"] == 1
    assert deployments["portal-beat"]["spec"]["strategy"]["type"] == "Recreate"

    budgets = by_kind(docs, "PodDisruptionBudget")
    for name in ("portal-web", "portal-worker"):
        selector = budgets[name]["spec"]["selector"]["matchLabels"]
        labels = deployments[name]["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items(), name

    hpas = by_kind(docs, "HorizontalPodAutoscaler")
    assert hpas["portal-web"]["spec"]["scaleTargetRef"]["name"] == "portal-web"
    queue = by_kind(docs, "ConfigMap")[PORTAL]["data"]["CELERY_QUEUE"]
    scaled = by_kind(docs, "ScaledObject")
    if scaled:
        [trigger] = scaled["portal-worker"]["spec"]["triggers"]
        assert scaled["portal-worker"]["spec"]["scaleTargetRef"]["name"] == "portal-worker"
        assert trigger["type"] == "redis" and trigger["metadata"]["listName"] == queue
        assert "portal-worker" not in hpas, "KEDA makes the worker's HPA itself"
    else:
        metric = hpas["portal-worker"]["spec"]["metrics"][0]["external"]["metric"]
        assert metric["name"] == "portal_queue_messages"
        assert metric["selector"]["matchLabels"] == {"queue": queue}

    [job] = by_kind(docs, "Job").values()
    assert job["spec"]["template"]["spec"]["containers"][0]["command"] == [
        "python", "manage.py", "migrate", "--no-input",
    ]  # fmt: skip


@pytest.mark.parametrize("overlay", OVERLAYS, ids=lambda p: p.name)
def test_network_policies_deny_by_default_and_services_select_pods(overlay: Path) -> None:
    docs = render(overlay)
    policies = by_kind(docs, "NetworkPolicy")
    deny = policies["default-deny"]["spec"]
    assert deny["podSelector"] == {} and set(deny["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in deny and "egress" not in deny
    templates = [d["spec"]["template"]["metadata"]["labels"] for d in workloads(docs).values()]
    for name, service in by_kind(docs, "Service").items():
        selector = service["spec"]["selector"]
        assert any(selector.items() <= labels.items() for labels in templates), name
    for name, policy in policies.items():
        selector = policy["spec"]["podSelector"].get("matchLabels", {})
        assert any(selector.items() <= labels.items() for labels in templates), name


def test_commands_and_settings_are_the_portals_own() -> None:
    """Each container runs an entry point of this project, and each ConfigMap key is a variable
    portal/settings.py (or prometheus-client) reads."""
    settings_source = (REPO_ROOT / "portal" / "settings.py").read_text()
    # Read by prometheus-client itself, and expanded by Kubernetes into ALLOWED_HOSTS.
    read_elsewhere = {"PROMETHEUS_MULTIPROC_DIR", "PORTAL_HOST"}
    for name in yaml.safe_load((KUBERNETES / "base" / "configmap.yaml").read_text())["data"]:
        assert name in read_elsewhere or f'"{name}"' in settings_source, name
    docs = render(KUBERNETES / "base")
    for name, doc in workloads(docs).items():
        program, *args = doc["spec"]["template"]["spec"]["containers"][0]["command"]
        if program == "gunicorn":
            assert importlib.util.find_spec(args[0]), name
            config = args[args.index("--config") + 1].removeprefix("python:")
            assert importlib.util.find_spec(config), name
        elif program == "celery":
            assert args[:3] in (["-A", "portal", "worker"], ["-A", "portal", "beat"]), name
        else:
            assert [program, *args[:2]] == ["python", "manage.py", "migrate"], name
