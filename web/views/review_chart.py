"""The access review page's rows, and its chart: one stacked bar per team (and one for all),
its segments the items by decision or state, drawn server-side as inline SVG geometry (no
script, no styles: the colours are SVG presentation attributes, which the strict CSP allows)."""

from __future__ import annotations

from dataclasses import dataclass

from django.urls import reverse

from identities.models import REVIEW_ITEM_STATES_OPEN, AccessReviewItem
from identities.selectors.reviews import PROGRESS_KEYS, CampaignProgress

LABELS = {
    "keep": "Still needed",
    "reduce": "Reduce",
    "remove": "Remove",
    "revoked": "Revoked (overdue)",
    "awaiting_second": "Needs a second attester",
    "pending": "To review",
}
# Each at least 3:1 against white (WCAG 1.4.11 for graphics).
COLOURS = {
    "keep": "#2e7d32",
    "reduce": "#9a5b00",
    "remove": "#b00020",
    "revoked": "#5d4037",
    "awaiting_second": "#1565c0",
    "pending": "#6b6b6b",
}
TEAMS_SHOWN = 20
WIDTH, LABEL_WIDTH, BAR_HEIGHT, GAP = 640, 150, 18, 8


@dataclass(frozen=True)
class Segment:
    key: str
    label: str
    colour: str
    count: int
    x: str  # SVG coordinates, formatted once here (not by a filter per use)
    width: str


@dataclass(frozen=True)
class Bar:
    label: str
    total: int
    done: int
    y: str
    text_y: str
    segments: list[Segment]


@dataclass(frozen=True)
class TeamCounts:
    """A row of the numbers table: the team, its item count, then one count per key."""

    team: str
    total: int
    cells: list[int]


def team_table(progress: CampaignProgress) -> list[TeamCounts]:
    return [
        TeamCounts("All", progress.total, [progress.counts.get(k, 0) for k in PROGRESS_KEYS]),
        *(
            TeamCounts(t.team, t.total, [t.counts.get(k, 0) for k in PROGRESS_KEYS])
            for t in progress.teams
        ),
    ]


@dataclass(frozen=True)
class ReviewChart:
    bars: list[Bar]
    legend: list[tuple[str, str]]
    height: int
    width: int = WIDTH
    label_width: int = LABEL_WIDTH
    bar_height: int = BAR_HEIGHT
    more_teams: int = 0


def _bar(label: str, total: int, done: int, counts: dict[str, int], row: int) -> Bar:
    plot = WIDTH - LABEL_WIDTH - 60
    x = float(LABEL_WIDTH)
    segments = []
    for key in PROGRESS_KEYS:
        count = counts.get(key, 0)
        if not count:
            continue
        width = plot * count / total if total else 0.0
        segments.append(
            Segment(key, LABELS[key].lower(), COLOURS[key], count, f"{x:.1f}", f"{width:.1f}")
        )
        x += width
    y = row * (BAR_HEIGHT + GAP) + GAP
    return Bar(label[:22], total, done, f"{y:.1f}", f"{y + BAR_HEIGHT - 4:.1f}", segments)


def review_chart(progress: CampaignProgress) -> ReviewChart:
    """The overall bar, then the teams with the most items still open first."""
    teams = sorted(progress.teams, key=lambda t: (-(t.total - t.done), t.team))[:TEAMS_SHOWN]
    bars = [_bar("All teams", progress.total, progress.done, progress.counts, 0)]
    bars += [_bar(t.team, t.total, t.done, dict(t.counts), n + 1) for n, t in enumerate(teams)]
    return ReviewChart(
        bars=bars,
        legend=[(LABELS[key], COLOURS[key]) for key in PROGRESS_KEYS],
        height=len(bars) * (BAR_HEIGHT + GAP) + GAP,
        more_teams=max(0, len(progress.teams) - TEAMS_SHOWN),
    )


@dataclass(frozen=True)
class ItemRow:
    """One review item as its table row shows it (computed here: the page lists 50 at once)."""

    pk: int
    identity_name: str
    identity_url: str
    team: str
    privileged: bool
    roles: list[tuple[str, str]]
    state: str
    decision: str
    overdue: bool
    attestations: list[str]
    follow_up: tuple[int, str] | None
    attest_url: str
    can_attest: bool
    can_remove: bool


def item_rows(
    items: list[AccessReviewItem],
    *,
    campaign_open: bool,
    my_team_ids: set[int],
    is_security: bool,
) -> list[ItemRow]:
    identity_url = reverse("identity_detail", args=[0]).replace("/0/", "/{}/")
    attest_url = reverse("review_attest", args=[0]).replace("/0/", "/{}/")
    request_url = reverse("request_detail", args=[0]).replace("/0/", "/{}/")
    rows = []
    for item in items:
        mine = item.team_id in my_team_ids
        rows.append(
            ItemRow(
                pk=item.pk,
                identity_name=item.identity_name,
                identity_url=identity_url.format(item.identity_id),
                team=item.team.name,
                privileged=item.privileged,
                roles=[(role["role"], role["scope"]) for role in item.roles],
                state=item.get_state_display(),
                decision=item.get_decision_display() if item.decision else "",
                overdue=item.escalated_at is not None,
                attestations=[
                    f"{a.attester.get_username()}: {a.get_decision_display().lower()}"
                    f"{' (security)' if a.as_security else ''}, "
                    f"{a.created_at:%Y-%m-%d %H:%M}, audit row #{a.audit_event_id}"
                    for a in item.attestations.all()
                ],
                follow_up=(
                    (item.follow_up_request_id, request_url.format(item.follow_up_request_id))
                    if item.follow_up_request_id
                    else None
                ),
                attest_url=attest_url.format(item.pk),
                can_attest=campaign_open
                and item.state in REVIEW_ITEM_STATES_OPEN
                and (mine or is_security),
                can_remove=mine,
            )
        )
    return rows
