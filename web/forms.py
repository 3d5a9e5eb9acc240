"""Web UI forms. They parse what people type into the domain's vocabulary (a `RequestDraft`);
every rule about what may be requested lives in the policy engine, not here."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any

from django import forms
from django.conf import settings
from django.forms import formset_factory
from django.utils import timezone

from identities.audit.actions import AuditAction
from identities.models import (
    CatalogRole,
    Cluster,
    EmailFrequency,
    NotificationEvent,
    Team,
    WebhookFormat,
)
from identities.policy import KIND_NEW, RequestDraft, RoleDraft, Violation
from identities.scopes import ScopeError, looks_like_url, scope_from_portal_url
from identities.selectors.filters import ID_MAX

# Rule names of the form's own findings (the policy engine names its own rules).
TAGS_FORMAT_RULE = "tags_format"


@dataclass(frozen=True)
class ClusterOption:
    """A cluster the requester may pick, with the namespaces their teams own on it."""

    cluster: Cluster
    namespaces: Sequence[str]


def role_choice_label(role: CatalogRole) -> str:
    label = role.name
    if role.privileged:
        label += " (privileged: exception only)"
    return label


class CatalogRoleSelect(forms.Select):
    """A role picker whose options carry the role's description (shown beside the picker)."""

    def __init__(
        self,
        *args: Any,
        descriptions: dict[str, str] | None = None,
        resource_types: dict[str, Sequence[str]] | None = None,
        **kwargs: Any,
    ):
        super().__init__(*args, **kwargs)
        self.descriptions = descriptions or {}
        self.resource_types = resource_types or {}

    def create_option(self, name: str, value: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        option = super().create_option(name, value, *args, **kwargs)
        description = self.descriptions.get(str(value))
        if description:
            option["attrs"]["data-description"] = description
        if str(value) in self.resource_types:
            # The resource picker offers only what the chosen role is meant for.
            option["attrs"]["data-resource-types"] = ",".join(
                t.lower() for t in self.resource_types[str(value)]
            )
        return option


def _end_date_field(help_text: str = "") -> forms.DateTimeField:
    return forms.DateTimeField(
        label="End date",
        required=False,
        help_text=help_text,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
    )


def role_end_date_help() -> str:
    """The maximums the policy applies to a role's end date, as the form shows them."""
    privileged, other = settings.ACCESS_MAX_DAYS_PRIVILEGED, settings.ACCESS_MAX_DAYS
    parts = ["When the role is removed (UTC); blank = until removed."]
    if privileged > 0:
        parts.append(f"Privileged roles need one, at most {privileged} days away.")
    parts.append(
        f"Other roles need one, at most {other} days away."
        if other > 0
        else "Other roles need none."
    )
    return " ".join(parts)


def identity_end_date_help() -> str:
    limit = settings.ACCESS_MAX_DAYS
    help_text = "Optional: the identity is decommissioned at this time (UTC)."
    return help_text + (f" At most {limit} days away." if limit > 0 else "")


def renewed_end(assignment: Any) -> datetime:
    """A renewal's proposed end: the longest its policy allows from now (the role's maximum),
    or, when no maximum applies, its current end extended by the length it was granted for."""
    limit = (
        settings.ACCESS_MAX_DAYS_PRIVILEGED
        if assignment.role.privileged
        else settings.ACCESS_MAX_DAYS
    )
    now = timezone.now().replace(second=0, microsecond=0)
    if limit > 0:
        return now + timedelta(days=limit) - timedelta(minutes=1)
    granted_for = assignment.expires_at - assignment.created_at
    return max(now, assignment.expires_at.replace(second=0, microsecond=0)) + granted_for


def describe_controls(form: forms.Form) -> None:
    """Point each control at its help text and at the box where findings about it appear."""
    for name, field in form.fields.items():
        bound = form[name]
        ids = [f"{bound.auto_id}-feedback"]
        if field.help_text:
            ids.insert(0, f"{bound.auto_id}_helptext")
        field.widget.attrs["aria-describedby"] = " ".join(ids)


class IdentityRequestForm(forms.Form):
    """A new-identity request. Fields are optional here on purpose: the policy engine reports a
    missing field with the field and the rule ("namespace · required"), like any other finding."""

    team = forms.ChoiceField(required=False)
    cluster = forms.ChoiceField(required=False)
    namespace = forms.CharField(
        required=False,
        max_length=63,
        help_text="Only namespaces your team owns on the chosen cluster are accepted.",
    )
    service_account = forms.CharField(
        label="ServiceAccount",
        required=False,
        max_length=253,
        help_text="The Kubernetes ServiceAccount your pods run as.",
    )
    app_name = forms.CharField(
        label="App name",
        required=False,
        max_length=63,
        help_text="Lowercase letters, digits and '-'; part of the identity's name.",
    )
    tags = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "spellcheck": "false"}),
        help_text="One tag per line as name=value (for example costCentre=cc-4711).",
    )
    justification = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="What the app does with this access; approvers read it.",
    )
    is_exception = forms.BooleanField(
        label="This is a policy exception (privileged role or broad scope; needs two approvers)",
        required=False,
    )
    identity_expires_at = _end_date_field()

    def __init__(
        self,
        *args: Any,
        teams: Iterable[Team],
        clusters: Sequence[ClusterOption],
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        team_field = self.fields["team"]
        assert isinstance(team_field, forms.ChoiceField)  # noqa: S101 - narrows the type
        team_field.choices = [(team.name, team.name) for team in teams]
        cluster_field = self.fields["cluster"]
        assert isinstance(cluster_field, forms.ChoiceField)  # noqa: S101 - narrows the type
        cluster_field.choices = [("", "Choose a cluster…")] + [
            (option.cluster.name, f"{option.cluster.name} ({option.cluster.location})")
            for option in clusters
        ]
        if len(clusters) == 1 and not self.is_bound:
            self.initial.setdefault("cluster", clusters[0].cluster.name)
        self.fields["identity_expires_at"].label = "Identity end date"
        self.fields["identity_expires_at"].help_text = identity_end_date_help()
        self.fields["namespace"].widget.attrs.update(
            {"list": f"namespaces-{self._initial_cluster(clusters)}", "autocomplete": "off"}
        )
        for name in ("service_account", "app_name"):
            self.fields[name].widget.attrs.update({"autocomplete": "off", "spellcheck": "false"})
        describe_controls(self)
        # The namespaces the team owns on the chosen cluster are listed beside the field.
        namespace_attrs = self.fields["namespace"].widget.attrs
        namespace_attrs["aria-describedby"] += " namespace-choices"

    def _initial_cluster(self, clusters: Sequence[ClusterOption]) -> str:
        if self.is_bound:
            return str(self.data.get("cluster", ""))
        return str(self.initial.get("cluster", ""))

    def clean_tags(self) -> dict[str, str]:
        tags: dict[str, str] = {}
        problems = []
        for number, line in enumerate(str(self.cleaned_data.get("tags") or "").splitlines(), 1):
            if not line.strip():
                continue
            key, separator, value = line.partition("=")
            if not separator or not key.strip():
                problems.append(f"line {number} is not name=value")
                continue
            tags[key.strip()] = value.strip()
        if problems:
            raise forms.ValidationError(
                "tags · tags_format: " + "; ".join(problems) + ".", code=TAGS_FORMAT_RULE
            )
        return tags


class RoleForm(forms.Form):
    """One requested role: a catalog role on one ARM scope, typed, pasted as an Azure portal URL,
    or found among the team's resources in Azure (the type-ahead fills the scope; without
    JavaScript, the resource search page lists ids to copy)."""

    role = forms.ChoiceField(required=False, widget=CatalogRoleSelect)
    scope = forms.CharField(
        label="Scope",
        help_text="The ARM resource id of the one resource the role applies to, or its Azure "
        "portal URL (copy the address bar on the resource's page).",
        required=False,
        max_length=2048,
        widget=forms.TextInput(
            attrs={
                "placeholder": "/subscriptions/…/resourceGroups/…/providers/…/…/… "
                "or https://portal.azure.com/#@…/resource/…",
                "spellcheck": "false",
                "autocomplete": "off",
            }
        ),
    )
    expires_at = _end_date_field()

    def __init__(
        self,
        *args: Any,
        catalog: Sequence[CatalogRole] = (),
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        role_field = self.fields["role"]
        assert isinstance(role_field, forms.ChoiceField)  # noqa: S101 - narrows the type
        role_field.choices = [("", "Choose a role…")] + [
            (role.name, role_choice_label(role)) for role in catalog
        ]
        role_field.widget = CatalogRoleSelect(
            choices=role_field.choices,
            descriptions={role.name: role.description for role in catalog},
            resource_types={role.name: tuple(role.resource_types or ()) for role in catalog},
        )
        self.fields["expires_at"].help_text = role_end_date_help()
        describe_controls(self)

    def clean_scope(self) -> str:
        """A pasted portal URL becomes the canonical scope it shows; ids are left as typed
        (the policy judges them, naming the rule)."""
        value = str(self.cleaned_data.get("scope") or "").strip()
        if not looks_like_url(value):
            return value
        try:
            return scope_from_portal_url(value).id
        except ScopeError as error:
            shown = value if len(value) <= 200 else value[:200] + "…"
            raise forms.ValidationError(
                f"Scope {shown!r} {error.explanation}.", code=error.rule
            ) from None

    @property
    def is_blank(self) -> bool:
        data = self.cleaned_data if hasattr(self, "cleaned_data") else {}
        return not data.get("role") and not str(data.get("scope") or "").strip()


class ResourceSearchForm(forms.Form):
    """The resource search page's filters (GET): part of a name or id, a catalog role, a team
    (errors name the field: Django's own messages, shown beside it)."""

    q = forms.CharField(
        label="Name or id contains",
        required=False,
        max_length=200,
        widget=forms.TextInput(attrs={"type": "search", "spellcheck": "false"}),
    )
    role = forms.ChoiceField(
        label="Only what this role is meant for",
        required=False,
        help_text="Resource groups are left out when a role is chosen: they are broad scopes.",
    )
    # Free text, not a choice of the user's teams: approvers may name any team, and the selector
    # (not the form) decides who sees what; a team that is not yours is a 404.
    team = forms.CharField(
        label="Team",
        required=False,
        max_length=100,
        help_text="Empty: all your teams.",
    )

    def __init__(self, *args: Any, roles: Sequence[str] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        role_field = self.fields["role"]
        assert isinstance(role_field, forms.ChoiceField)  # noqa: S101 - narrows the type
        role_field.choices = [("", "Any role"), *((name, name) for name in roles)]
        for name, field in self.fields.items():
            if field.help_text:
                field.widget.attrs["aria-describedby"] = f"id_{name}_helptext"


RoleFormSet = formset_factory(RoleForm, extra=0, min_num=1, max_num=20, validate_max=True)
ROLE_PREFIX = "roles"


@dataclass(frozen=True)
class DraftFromForm:
    """The draft built from a valid form, and where each draft role came from in the formset."""

    draft: RequestDraft
    role_rows: tuple[int, ...]  # draft role index -> formset form index


def request_draft_from_forms(form: IdentityRequestForm, role_forms: Any) -> DraftFromForm:
    """Both forms must be valid. Blank role rows (neither role nor scope) are left out."""
    roles: list[RoleDraft] = []
    rows: list[int] = []
    for index, role_form in enumerate(role_forms.forms):
        if role_form.is_blank:
            continue
        roles.append(
            RoleDraft(
                role=str(role_form.cleaned_data.get("role") or ""),
                scope=str(role_form.cleaned_data.get("scope") or "").strip(),
                expires_at=role_form.cleaned_data.get("expires_at"),
            )
        )
        rows.append(index)
    data = form.cleaned_data
    draft = RequestDraft(
        kind=KIND_NEW,
        team=str(data.get("team") or ""),
        cluster=str(data.get("cluster") or ""),
        namespace=str(data.get("namespace") or "").strip(),
        service_account=str(data.get("service_account") or "").strip(),
        app_name=str(data.get("app_name") or "").strip(),
        roles=tuple(roles),
        tags=data.get("tags") or {},
        justification=str(data.get("justification") or ""),
        is_exception=bool(data.get("is_exception")),
        identity_expires_at=data.get("identity_expires_at"),
    )
    return DraftFromForm(draft=draft, role_rows=tuple(rows))


@dataclass(frozen=True)
class PlacedFinding:
    """A policy finding and the form control it belongs to (`dom_id`, empty: the whole form)."""

    finding: Violation
    dom_id: str
    label: str
    blocking: bool


FIELD_LABELS = {
    "team": "Team",
    "cluster": "Cluster",
    "namespace": "Namespace",
    "service_account": "ServiceAccount",
    "app_name": "App name",
    "roles": "Roles",
    "tags": "Tags",
    "justification": "Justification",
    "is_exception": "Exception",
    "identity_expires_at": "Identity end date",
    "identity": "Identity",
    "kind": "Request kind",
}


def place_finding(finding: Violation, *, role_rows: Sequence[int], blocking: bool) -> PlacedFinding:
    """Map a finding's field path ("roles[1].scope", "tags.env") to the control that shows it."""
    path = finding.field
    if path.startswith("roles["):
        index_text, _, rest = path[len("roles[") :].partition("]")
        draft_index = int(index_text) if index_text.isdigit() else -1
        row = role_rows[draft_index] if 0 <= draft_index < len(role_rows) else draft_index
        sub = rest.lstrip(".") or "role"
        what = {"scope": "scope", "expires_at": "end date"}.get(sub, "role")
        return PlacedFinding(
            finding, f"id_{ROLE_PREFIX}-{row}-{sub}", f"Role {row + 1} {what}", blocking
        )
    head = path.split(".", 1)[0]
    if head == "roles":
        return PlacedFinding(finding, f"id_{ROLE_PREFIX}-0-role", "Roles", blocking)
    if head in FIELD_LABELS and head not in {"identity", "kind"}:
        return PlacedFinding(finding, f"id_{head}", FIELD_LABELS[head], blocking)
    return PlacedFinding(finding, "", FIELD_LABELS.get(head, head), blocking)


class ChangeRolesForm(forms.Form):
    """Why the identity's roles change; the roles themselves are a ChangeRoleFormSet."""

    justification = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Why the app needs this change; the approver reads it.",
    )
    is_exception = forms.BooleanField(
        required=False,
        label="This is a policy exception",
        help_text="Needed when the identity would hold a privileged role or a broad scope "
        "after gaining a role; two different approvers must approve it.",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        describe_controls(self)


class ResubmitForm(forms.Form):
    """A sent-back request's justification and exception mark, edited before resubmitting."""

    justification = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Say what you changed and why; the approver reads it.",
    )
    is_exception = forms.BooleanField(
        required=False,
        label="This is a policy exception",
        help_text="Two different approvers must approve it.",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        describe_controls(self)


# The identity's roles as they are (prefilled) plus blank rows to add; none left is allowed.
ChangeRoleFormSet = formset_factory(RoleForm, extra=2, max_num=50, validate_max=True)


class DecisionForm(forms.Form):
    """An approver's comment on approve or reject, and the revision the page showed (an
    approval of a request changed since is refused)."""

    comment = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    revision = forms.IntegerField(required=False, min_value=1, widget=forms.HiddenInput)


APPROVAL_AGES = {
    "1h": timedelta(hours=1),
    "1d": timedelta(days=1),
    "3d": timedelta(days=3),
    "7d": timedelta(days=7),
}


class ApprovalFilterForm(forms.Form):
    """The approval queue's filters (GET). `show=mine` is "waiting for me"."""

    show = forms.ChoiceField(
        choices=[("all", "All pending"), ("mine", "Waiting for me")], required=False
    )
    team = forms.ChoiceField(required=False, label="Team")
    cluster = forms.ChoiceField(required=False, label="Cluster")
    risk = forms.ChoiceField(
        required=False,
        label="Risk",
        choices=[("", "Any risk"), ("low", "Low"), ("medium", "Medium"), ("high", "High")],
    )
    age = forms.ChoiceField(
        required=False,
        label="Waiting for at least",
        choices=[
            ("", "Any age"),
            ("1h", "1 hour"),
            ("1d", "1 day"),
            ("3d", "3 days"),
            ("7d", "7 days"),
        ],
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        teams = Team.objects.order_by("name").values_list("name", flat=True)
        clusters = Cluster.objects.order_by("name").values_list("name", flat=True)
        team_field = self.fields["team"]
        cluster_field = self.fields["cluster"]
        assert isinstance(team_field, forms.ChoiceField)  # noqa: S101 - declared above
        assert isinstance(cluster_field, forms.ChoiceField)  # noqa: S101 - declared above
        team_field.choices = [("", "Any team")] + [(name, name) for name in teams]
        cluster_field.choices = [("", "Any cluster")] + [(name, name) for name in clusters]

    @property
    def waiting_for_me(self) -> bool:
        return self.is_valid() and self.cleaned_data.get("show") == "mine"

    def older_than(self) -> timedelta | None:
        return APPROVAL_AGES.get(self.cleaned_data.get("age") or "")


class DecommissionForm(forms.Form):
    justification = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Why the identity is no longer needed.",
    )


class AddServiceAccountForm(forms.Form):
    """Another ServiceAccount for an existing identity (it shares the identity's roles)."""

    namespace = forms.CharField(max_length=63)
    service_account = forms.CharField(label="ServiceAccount", max_length=253)
    justification = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}))


# Suggestions for the action filter; it takes an exact action or a prefix ending in ".".
AUDIT_ACTION_SUGGESTIONS = (
    "identity_request.",
    AuditAction.REQUEST_CREATED,
    AuditAction.REQUEST_APPROVED,
    AuditAction.REQUEST_READY,
    AuditAction.REQUEST_FAILED,
    "identity.",
    "azure.",
    "user.",
    "cluster.",
    "team.",
    "namespaceownership.",
    "catalogrole.",
)


class AuditFilterForm(forms.Form):
    """Filters of the audit log; `q` searches actor, action and the recorded data."""

    q = forms.CharField(label="Search", required=False, max_length=200)
    action = forms.CharField(
        required=False,
        max_length=100,
        help_text='An exact action, or a prefix ending in "." such as azure.',
        widget=forms.TextInput(attrs={"list": "audit-actions", "spellcheck": "false"}),
    )
    actor = forms.CharField(required=False, max_length=150)
    # At most ID_MAX: a larger number made the database driver raise (a 500) on SQLite.
    identity_request = forms.IntegerField(
        label="Request #", required=False, min_value=1, max_value=ID_MAX
    )
    identity = forms.IntegerField(label="Identity #", required=False, min_value=1, max_value=ID_MAX)
    since = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(
        label="Until (inclusive)",
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
    )

    def since_datetime(self) -> datetime | None:
        day = self.cleaned_data.get("since")
        return timezone.make_aware(datetime.combine(day, time.min)) if day else None

    def until_datetime(self) -> datetime | None:
        day = self.cleaned_data.get("until")
        if not day:
            return None
        # The selector's `until` is exclusive: the next midnight includes the whole day.
        return timezone.make_aware(datetime.combine(day + timedelta(days=1), time.min))


TOKEN_LIFETIMES = [
    ("30d", "30 days"),
    ("90d", "90 days"),
    ("365d", "1 year"),
    ("never", "Never expires"),
]


class ApiTokenForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="What uses it, e.g. the CI pipeline's name.")
    scopes = forms.MultipleChoiceField(choices=[], widget=forms.CheckboxSelectMultiple)
    lifetime = forms.ChoiceField(choices=TOKEN_LIFETIMES, initial="90d", label="Expires after")

    def __init__(self, *args: Any, scopes: Sequence[tuple[str, str]] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        scope_field = self.fields["scopes"]
        assert isinstance(scope_field, forms.MultipleChoiceField)  # noqa: S101 - narrows the type
        scope_field.choices = list(scopes)


SERVICE_SCOPE_DESCRIPTIONS = [
    ("read", "read: see the team's requests, identities and their audit trail"),
    ("request", "request: file, cancel and retry identity requests for the team"),
]


class _TeamMachineForm(forms.Form):
    """What both forms of the pipelines page share: the team and its service principal."""

    team = forms.ChoiceField(choices=[])
    service_principal = forms.CharField(
        max_length=63,
        label="Service principal",
        help_text="The name the audit trail shows as svc:TEAM/NAME, e.g. deploy-pipeline "
        "(created on first use).",
    )

    # Both forms share a page: ids of their own, so each label names one field.
    id_prefix = "machine"

    def __init__(self, *args: Any, teams: Sequence[str] = (), **kwargs: Any) -> None:
        kwargs.setdefault("auto_id", f"{self.id_prefix}-%s")
        super().__init__(*args, **kwargs)
        team_field = self.fields["team"]
        assert isinstance(team_field, forms.ChoiceField)  # noqa: S101 - narrows the type
        team_field.choices = [(name, name) for name in teams]


class TrustRuleForm(_TeamMachineForm):
    id_prefix = "rule"
    name = forms.CharField(max_length=100, help_text="What the rule is for.")
    issuer = forms.CharField(
        max_length=300,
        label="Issuer",
        help_text="The token's iss, exactly, e.g. https://token.actions.githubusercontent.com",
    )
    audience = forms.CharField(
        max_length=300, help_text="The aud the pipeline asks its CI system for."
    )
    subject = forms.CharField(
        max_length=300,
        required=False,
        label="Exact subject",
        help_text="e.g. repo:contoso/payments:environment:production",
    )
    subject_pattern = forms.CharField(
        max_length=300,
        required=False,
        label="Or a subject pattern",
        help_text="* matches any characters, e.g. repo:contoso/payments:ref:refs/heads/*",
    )
    claims = forms.CharField(
        required=False,
        label="Exact claims",
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="One name=value per line, e.g. repository=contoso/payments",
    )
    scopes = forms.MultipleChoiceField(
        choices=SERVICE_SCOPE_DESCRIPTIONS, widget=forms.CheckboxSelectMultiple
    )

    def clean_claims(self) -> dict[str, str]:
        claims: dict[str, str] = {}
        for number, line in enumerate(self.cleaned_data["claims"].splitlines(), start=1):
            if not line.strip():
                continue
            name, separator, value = line.partition("=")
            if not separator or not name.strip() or not value.strip():
                raise forms.ValidationError(f"Line {number}: write name=value.")
            claims[name.strip()] = value.strip()
        return claims


class ServiceTokenForm(_TeamMachineForm):
    id_prefix = "token"
    name = forms.CharField(max_length=100, help_text="What uses it, e.g. the nightly job.")
    scopes = forms.MultipleChoiceField(
        choices=SERVICE_SCOPE_DESCRIPTIONS, widget=forms.CheckboxSelectMultiple
    )
    lifetime = forms.ChoiceField(
        choices=[choice for choice in TOKEN_LIFETIMES if choice[0] != "never"],
        initial="90d",
        label="Expires after",
    )


class NotificationPreferenceForm(forms.Form):
    email_events = forms.MultipleChoiceField(
        choices=NotificationEvent.choices,
        widget=forms.CheckboxSelectMultiple,
        required=False,
        label="Email me when",
        help_text="Every event also appears in your inbox here, whatever you choose.",
    )
    email_frequency = forms.ChoiceField(
        choices=EmailFrequency.choices, widget=forms.RadioSelect, label="How often"
    )


class WebhookEndpointForm(forms.Form):
    team = forms.ChoiceField(choices=[], label="For")
    url = forms.CharField(
        max_length=2000,
        label="URL",
        help_text="Where the portal POSTs each event: https, at a public address.",
    )
    events = forms.MultipleChoiceField(
        choices=[], widget=forms.CheckboxSelectMultiple, label="Events"
    )
    format = forms.ChoiceField(
        choices=WebhookFormat.choices,
        initial=WebhookFormat.STANDARD,
        required=False,  # absent: standard
        label="Format",
        help_text="Teams and Slack get a chat message with a link to the page, unsigned: keep "
        "their incoming webhook URL secret.",
    )
    description = forms.CharField(max_length=200, required=False)

    def __init__(self, *args: Any, teams: Sequence[tuple[str, str]] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        team_field = self.fields["team"]
        assert isinstance(team_field, forms.ChoiceField)  # noqa: S101 - narrows the type
        team_field.choices = list(teams)
        events_field = self.fields["events"]
        assert isinstance(events_field, forms.MultipleChoiceField)  # noqa: S101 - narrows the type
        events_field.choices = [
            (event, label)
            for event, label in NotificationEvent.choices
            if event != NotificationEvent.WEBHOOK_DISABLED
        ]
