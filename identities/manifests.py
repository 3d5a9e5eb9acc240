"""Kubernetes manifests handed over with a ready workload identity.

Pure functions of a `HandoverSpec`: no Django models, no I/O. Objects are built with the
kubernetes client's models and serialised with `ApiClient().sanitize_for_serialization`, which
gives camelCase keys and drops unset fields (the models' own `to_dict()` is snake_case in 37.x).
"""

from __future__ import annotations

import functools
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml
from kubernetes import client as k8s

USE_LABEL = "azure.workload.identity/use"
CLIENT_ID_ANNOTATION = "azure.workload.identity/client-id"
TENANT_ID_ANNOTATION = "azure.workload.identity/tenant-id"
TOKEN_EXPIRATION_ANNOTATION = "azure.workload.identity/service-account-token-expiration"  # noqa: S105 (a key)
PORTAL_URL_ANNOTATION = "workload-identity-portal/identity-url"
NAME_LABEL = "app.kubernetes.io/name"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "workload-identity-portal"

TOKEN_EXCHANGE_AUDIENCE = "api://AzureADTokenExchange"  # noqa: S105 (an audience)
PUBLIC_CLOUD_AUTHORITY = "https://login.microsoftonline.com/"
# Range the webhook accepts for the token-expiration annotation (default 3600).
TOKEN_EXPIRATION_RANGE = (3600, 86400)
# `.invalid` never resolves (RFC 2606), so a skeleton applied unchanged fails to pull, loudly,
# instead of running somebody else's image.
PLACEHOLDER_IMAGE_TEMPLATE = "replace-me.invalid/{app_name}:replace-me"
DEFAULT_SCHEDULE = "0 * * * *"
# The CronJob controller appends an 11-character suffix to job names, hence 52, not 63.
CRONJOB_NAME_MAX = 52

_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_CRON_MACROS = frozenset(
    {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
)


class InvalidHandoverSpec(ValueError):
    """A hand-over input that would produce manifests Kubernetes or the webhook rejects."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name


@dataclass(frozen=True, kw_only=True)
class RoleAssignmentSpec:
    """One role assignment the portal made for the identity; `name` is its deterministic GUID."""

    role_name: str
    role_definition_guid: str
    scope: str
    name: str


@dataclass(frozen=True, kw_only=True)
class HandoverSpec:
    """Everything the hand-over needs about one ready identity, validated on construction."""

    app_name: str
    namespace: str
    service_account: str
    client_id: str
    tenant_id: str
    principal_id: str
    identity_name: str
    identity_resource_id: str
    subscription_id: str
    resource_group: str
    location: str
    cluster_name: str
    cluster_resource_group: str
    oidc_issuer_url: str
    fic_name: str
    fic_subject: str
    audience: str = TOKEN_EXCHANGE_AUDIENCE
    role_assignments: tuple[RoleAssignmentSpec, ...] = ()
    tags: Mapping[str, str] = field(default_factory=dict)
    token_expiration_seconds: int | None = None
    image: str | None = None
    portal_url: str | None = None
    authority_host: str = PUBLIC_CLOUD_AUTHORITY

    def __post_init__(self) -> None:
        _check_dns_label("app_name", self.app_name)
        _check_dns_label("namespace", self.namespace)
        _check_dns_subdomain("service_account", self.service_account)
        for name in ("client_id", "tenant_id", "principal_id", "subscription_id"):
            _check_guid(name, getattr(self, name))
        expected_subject = f"system:serviceaccount:{self.namespace}:{self.service_account}"
        if self.fic_subject != expected_subject:
            # A mismatch here is exactly the AADSTS700213 failure; refuse to hand it over.
            raise InvalidHandoverSpec(
                "fic_subject",
                f"{self.fic_subject!r} does not match the service account; "
                f"expected {expected_subject!r}",
            )
        if not self.oidc_issuer_url.startswith("https://"):
            raise InvalidHandoverSpec("oidc_issuer_url", "must be an https:// URL")
        _check_token_expiration(self.token_expiration_seconds)
        if self.image is not None and (not self.image or any(c.isspace() for c in self.image)):
            raise InvalidHandoverSpec("image", "must be a non-empty image reference")
        for key, value in self.tags.items():
            if not isinstance(key, str) or not isinstance(value, str) or not key:
                raise InvalidHandoverSpec("tags", f"keys and values must be strings: {key!r}")
        for assignment in self.role_assignments:
            _check_guid("role_assignments.role_definition_guid", assignment.role_definition_guid)
            _check_guid("role_assignments.name", assignment.name)
            if not assignment.scope.startswith("/"):
                raise InvalidHandoverSpec(
                    "role_assignments.scope", f"{assignment.scope!r} is not an ARM scope"
                )

    @property
    def container_image(self) -> str:
        return self.image or PLACEHOLDER_IMAGE_TEMPLATE.format(app_name=self.app_name)


def _check_dns_label(field_name: str, value: str) -> None:
    if len(value) > 63 or not _DNS_LABEL.fullmatch(value):
        raise InvalidHandoverSpec(
            field_name,
            f"{value!r} is not a DNS-1123 label (lowercase alphanumerics and '-', "
            "start and end alphanumeric, at most 63 characters)",
        )


def _check_dns_subdomain(field_name: str, value: str) -> None:
    if len(value) > 253 or not _DNS_SUBDOMAIN.fullmatch(value):
        raise InvalidHandoverSpec(
            field_name, f"{value!r} is not a DNS-1123 subdomain (at most 253 characters)"
        )


def _check_guid(field_name: str, value: str) -> None:
    try:
        uuid.UUID(value)
    except (ValueError, AttributeError, TypeError):
        raise InvalidHandoverSpec(field_name, f"{value!r} is not a GUID") from None


def _check_token_expiration(value: int | None) -> None:
    if value is None:
        return
    low, high = TOKEN_EXPIRATION_RANGE
    # bool is an int subclass; True would otherwise pass as 1 and fail confusingly.
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidHandoverSpec(
            "token_expiration_seconds",
            f"{value!r} is outside the range the webhook accepts ({low}-{high} seconds)",
        )


def _app_labels(spec: HandoverSpec) -> dict[str, str]:
    return {NAME_LABEL: spec.app_name}


def _pod_labels(spec: HandoverSpec) -> dict[str, str]:
    # The webhook mutates only pods carrying this label, as the string "true", on the pod itself.
    return {**_app_labels(spec), USE_LABEL: "true"}


def _pod_template(
    spec: HandoverSpec, *, restart_policy: str | None = None
) -> k8s.V1PodTemplateSpec:
    container = k8s.V1Container(
        name=spec.app_name,
        image=spec.container_image,
        resources=k8s.V1ResourceRequirements(
            requests={"cpu": "100m", "memory": "128Mi"}, limits={"memory": "256Mi"}
        ),
        security_context=k8s.V1SecurityContext(
            allow_privilege_escalation=False,
            read_only_root_filesystem=True,
            run_as_non_root=True,
            capabilities=k8s.V1Capabilities(drop=["ALL"]),
            seccomp_profile=k8s.V1SeccompProfile(type="RuntimeDefault"),
        ),
        # A read-only root filesystem breaks most runtimes without a writable /tmp.
        volume_mounts=[k8s.V1VolumeMount(name="tmp", mount_path="/tmp")],  # noqa: S108
    )
    return k8s.V1PodTemplateSpec(
        metadata=k8s.V1ObjectMeta(labels=_pod_labels(spec)),
        spec=k8s.V1PodSpec(
            service_account_name=spec.service_account,
            restart_policy=restart_policy,
            security_context=k8s.V1PodSecurityContext(
                run_as_non_root=True,
                seccomp_profile=k8s.V1SeccompProfile(type="RuntimeDefault"),
            ),
            containers=[container],
            volumes=[k8s.V1Volume(name="tmp", empty_dir=k8s.V1EmptyDirVolumeSource())],
        ),
    )


def _workload_metadata(spec: HandoverSpec) -> k8s.V1ObjectMeta:
    # No managed-by label: the team owns its workloads; the portal manages only the ServiceAccount.
    return k8s.V1ObjectMeta(name=spec.app_name, namespace=spec.namespace, labels=_app_labels(spec))


def _serialize(model: Any) -> dict[str, Any]:
    return _name_first(_api_client().sanitize_for_serialization(model))


@functools.cache
def _api_client() -> k8s.ApiClient:
    return k8s.ApiClient()


def _name_first(value: Any) -> Any:
    """Put `name` and `namespace` first in every mapping, the order people read manifests in."""
    if isinstance(value, list):
        return [_name_first(item) for item in value]
    if isinstance(value, dict):
        front = [key for key in ("name", "namespace") if key in value]
        rest = [key for key in value if key not in front]
        return {key: _name_first(value[key]) for key in front + rest}
    return value


def render_service_account(spec: HandoverSpec) -> dict[str, Any]:
    """The annotated ServiceAccount the identity's federated credential trusts."""
    annotations = {
        CLIENT_ID_ANNOTATION: spec.client_id,
        TENANT_ID_ANNOTATION: spec.tenant_id,
    }
    if spec.token_expiration_seconds is not None:
        annotations[TOKEN_EXPIRATION_ANNOTATION] = str(spec.token_expiration_seconds)
    if spec.portal_url:
        annotations[PORTAL_URL_ANNOTATION] = spec.portal_url
    service_account = k8s.V1ServiceAccount(
        api_version="v1",
        kind="ServiceAccount",
        metadata=k8s.V1ObjectMeta(
            name=spec.service_account,
            namespace=spec.namespace,
            labels={**_app_labels(spec), MANAGED_BY_LABEL: MANAGED_BY},
            annotations=annotations,
        ),
    )
    return _serialize(service_account)


def render_deployment(spec: HandoverSpec) -> dict[str, Any]:
    """A Deployment skeleton whose pods run as the identity."""
    deployment = k8s.V1Deployment(
        api_version="apps/v1",
        kind="Deployment",
        metadata=_workload_metadata(spec),
        spec=k8s.V1DeploymentSpec(
            replicas=1,
            # Selectors are immutable: keep them to the app label, not the webhook label.
            selector=k8s.V1LabelSelector(match_labels=_app_labels(spec)),
            template=_pod_template(spec),
        ),
    )
    return _serialize(deployment)


def _job_spec(spec: HandoverSpec) -> k8s.V1JobSpec:
    return k8s.V1JobSpec(
        backoff_limit=3,
        ttl_seconds_after_finished=86400,
        template=_pod_template(spec, restart_policy="Never"),
    )


def render_job(spec: HandoverSpec) -> dict[str, Any]:
    """A one-off Job skeleton whose pod runs as the identity."""
    job = k8s.V1Job(
        api_version="batch/v1",
        kind="Job",
        metadata=_workload_metadata(spec),
        spec=_job_spec(spec),
    )
    return _serialize(job)


def render_cronjob(spec: HandoverSpec, schedule: str = DEFAULT_SCHEDULE) -> dict[str, Any]:
    """A CronJob skeleton; the label sits on the pod template inside the job template."""
    if len(spec.app_name) > CRONJOB_NAME_MAX:
        raise InvalidHandoverSpec(
            "app_name", f"a CronJob name may have at most {CRONJOB_NAME_MAX} characters"
        )
    fields = schedule.split()
    if not (len(fields) == 5 or (len(fields) == 1 and fields[0] in _CRON_MACROS)):
        raise InvalidHandoverSpec("schedule", f"{schedule!r} is not a five-field cron schedule")
    cronjob = k8s.V1CronJob(
        api_version="batch/v1",
        kind="CronJob",
        metadata=_workload_metadata(spec),
        spec=k8s.V1CronJobSpec(
            schedule=" ".join(fields),
            concurrency_policy="Forbid",
            job_template=k8s.V1JobTemplateSpec(
                metadata=k8s.V1ObjectMeta(labels=_app_labels(spec)),
                spec=_job_spec(spec),
            ),
        ),
    )
    return _serialize(cronjob)


MANIFEST_KINDS: Mapping[str, Callable[[HandoverSpec], dict[str, Any]]] = {
    "serviceaccount": render_service_account,
    "deployment": render_deployment,
    "job": render_job,
    "cronjob": render_cronjob,
}
DEFAULT_BUNDLE_KINDS = ("serviceaccount", "deployment")


def to_yaml(document: Mapping[str, Any]) -> str:
    """One YAML document; strings such as "true" stay quoted because safe_dump quotes them."""
    return yaml.safe_dump(
        dict(document), sort_keys=False, default_flow_style=False, allow_unicode=True, width=4096
    )


def _header(spec: HandoverSpec) -> str:
    lines = [
        f"# Workload identity {spec.identity_name} for {spec.namespace}/{spec.service_account}",
        "# generated by workload-identity-portal.",
    ]
    if spec.image is None:
        lines.append(f"# Replace the placeholder image {spec.container_image} with your own.")
    if spec.portal_url:
        lines.append(f"# Details and audit trail: {spec.portal_url}")
    # A line break in a value would end the comment and inject YAML; keep each line single.
    return "".join(" ".join(line.splitlines()) + "\n" for line in lines)


def render_one(spec: HandoverSpec, kind: str) -> str:
    """One manifest as a YAML document with a comment header."""
    return _header(spec) + to_yaml(_render(spec, kind))


def render_bundle(spec: HandoverSpec, kinds: Sequence[str] = DEFAULT_BUNDLE_KINDS) -> str:
    """Several manifests as one multi-document YAML stream, `---` between documents."""
    if isinstance(kinds, str):
        kinds = (kinds,)
    if not kinds:
        raise InvalidHandoverSpec("kinds", "choose at least one manifest kind")
    documents = [to_yaml(_render(spec, kind)) for kind in kinds]
    return _header(spec) + "---\n".join(documents)


def _render(spec: HandoverSpec, kind: str) -> dict[str, Any]:
    renderer = MANIFEST_KINDS.get(kind.lower())
    if renderer is None:
        raise InvalidHandoverSpec(
            "kind", f"{kind!r} is not one of {', '.join(sorted(MANIFEST_KINDS))}"
        )
    return renderer(spec)
