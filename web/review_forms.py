"""Forms of the access review and ownership transfer pages (the services validate again)."""

from __future__ import annotations

from django import forms

from identities.models import CatalogRole, ReviewDecision, Team


class CampaignOpenForm(forms.Form):
    name = forms.CharField(max_length=200, help_text="What the review is, e.g. “Q4 2026”.")
    due_at = forms.DateTimeField(
        label="Due",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
        help_text="Teams attest every item by then; later, items are escalated to security.",
    )
    grace_days = forms.IntegerField(
        label="Grace period (days)",
        min_value=0,
        max_value=365,
        initial=7,
        help_text="Days after the due date before overdue items are revoked (if ticked below).",
    )
    revoke_when_overdue = forms.BooleanField(
        label="Revoke automatically when overdue",
        required=False,
        help_text="After the grace period, an unattested identity loses its role assignments "
        "(the identity itself stays).",
    )
    team = forms.ModelChoiceField(
        queryset=Team.objects.order_by("name"),
        required=False,
        empty_label="Every team",
        to_field_name="name",
    )
    role = forms.ModelChoiceField(
        queryset=CatalogRole.objects.order_by("name"),
        required=False,
        empty_label="Any role",
        to_field_name="name",
        help_text="Only identities holding this role.",
    )
    privileged_only = forms.BooleanField(
        label="Privileged access only",
        required=False,
        help_text="Only identities holding a privileged role (Owner, Contributor, …).",
    )


class AttestForm(forms.Form):
    decision = forms.ChoiceField(choices=ReviewDecision.choices)
    comment = forms.CharField(max_length=4000, required=False)


class TransferForm(forms.Form):
    to_team = forms.ModelChoiceField(
        label="Receiving team",
        queryset=Team.objects.order_by("name"),
        to_field_name="name",
        empty_label="Choose a team",
    )
    justification = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 2}),
        max_length=4000,
        help_text="Why the other team takes it over; both teams and security read it.",
    )


class CommentForm(forms.Form):
    comment = forms.CharField(max_length=4000, required=False)
