"""The home page's small chart: requests filed per week (bars) and the median time from filing to
ready (line), drawn server-side as inline SVG coordinates. No JavaScript, no chart library."""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from django.utils import timezone

from web.views.presenters import human_duration

WEEKS = 8
WIDTH, HEIGHT = 640, 220
LEFT, RIGHT, TOP, BOTTOM = 40, 56, 16, 34  # plot margins for the axes' labels


@dataclass(frozen=True)
class WeekPoint:
    week_start: date
    filed: int
    median_seconds: float | None
    # SVG geometry
    bar_x: float
    bar_y: float
    bar_width: float
    bar_height: float
    line_x: float
    line_y: float | None

    @property
    def label(self) -> str:
        return self.week_start.strftime("%d %b")

    @property
    def median_label(self) -> str:
        return human_duration(self.median_seconds) if self.median_seconds is not None else "—"


@dataclass(frozen=True)
class ActivityChart:
    points: list[WeekPoint]
    max_filed: int
    max_median_label: str
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    top: int = TOP
    plot_bottom: int = HEIGHT - BOTTOM
    plot_right: int = WIDTH - RIGHT

    @property
    def line_points(self) -> str:
        return " ".join(
            f"{p.line_x:.1f},{p.line_y:.1f}" for p in self.points if p.line_y is not None
        )

    @property
    def empty(self) -> bool:
        return not any(p.filed for p in self.points)

    @property
    def total_filed(self) -> int:
        return sum(p.filed for p in self.points)


def _week_start(moment: datetime) -> date:
    day = timezone.localtime(moment).date()
    return day - timedelta(days=day.weekday())


def chart_since(now: datetime | None = None) -> datetime:
    """The first instant the chart covers (Monday of the oldest week shown)."""
    today = _week_start(now or timezone.now())
    first = today - timedelta(weeks=WEEKS - 1)
    return timezone.make_aware(datetime.combine(first, datetime.min.time()))


def activity_chart(
    filed_at: Iterable[datetime],
    ready_durations: Iterable[tuple[datetime, float]],
    *,
    now: datetime | None = None,
) -> ActivityChart:
    """`filed_at`: when each request was filed; `ready_durations`: (ready at, seconds from filing
    to ready) per request that became ready. Both already limited to what the user may see."""
    first = _week_start(chart_since(now))
    weeks = [first + timedelta(weeks=n) for n in range(WEEKS)]
    filed = dict.fromkeys(weeks, 0)
    durations: dict[date, list[float]] = {week: [] for week in weeks}
    for moment in filed_at:
        week = _week_start(moment)
        if week in filed:
            filed[week] += 1
    for ready_at, seconds in ready_durations:
        week = _week_start(ready_at)
        if week in durations:
            durations[week].append(seconds)
    medians = {w: statistics.median(d) if d else None for w, d in durations.items()}

    max_filed = max([*filed.values(), 1])
    max_median = max([m for m in medians.values() if m is not None] or [1.0])
    plot_width = WIDTH - LEFT - RIGHT
    plot_height = HEIGHT - TOP - BOTTOM
    slot = plot_width / WEEKS
    bar_width = slot * 0.6
    points = []
    for n, week in enumerate(weeks):
        bar_height = plot_height * filed[week] / max_filed
        median = medians[week]
        points.append(
            WeekPoint(
                week_start=week,
                filed=filed[week],
                median_seconds=median,
                bar_x=LEFT + n * slot + (slot - bar_width) / 2,
                bar_y=TOP + plot_height - bar_height,
                bar_width=bar_width,
                bar_height=bar_height,
                line_x=LEFT + n * slot + slot / 2,
                line_y=None if median is None else TOP + plot_height * (1 - median / max_median),
            )
        )
    return ActivityChart(
        points=points, max_filed=max_filed, max_median_label=human_duration(max_median)
    )
