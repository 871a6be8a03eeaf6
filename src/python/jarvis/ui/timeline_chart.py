"""A cycle's timeline as SVG geometry: one bar per tool call, one marker per decision.

Computed here, drawn by templates/timeline.svg.html (so every label goes through autoescape):
the x axis runs from the cycle's start to its close (or to now while it is open); a call still
open is drawn to the axis' end. Coordinates are in the SVG's own units (`WIDTH` wide).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from jarvis.db.audit import CycleSummary, TimelineEntry, ToolCallSummary

WIDTH = 1000.0
LABEL_WIDTH = 180.0
ROW_HEIGHT = 22.0
MARKER_LANE = 26.0
MIN_BAR = 3.0
MOST_BARS = 500
"""More calls than this in one cycle: the first MOST_BARS are drawn; the timeline pages list them all."""

STATUS_CLASSES = {
    "succeeded": "ok",
    "failed": "failed",
    "cancelled": "cancelled",
    "abandoned": "abandoned",
    "started": "running",
    "tampered": "tampered",
    "unverifiable": "tampered",
}


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    css: str
    status: str
    label: str
    title: str
    anchor: str


@dataclass(frozen=True)
class Marker:
    x: float
    title: str
    anchor: str


@dataclass(frozen=True)
class Chart:
    width: float
    height: float
    plot_left: float
    bars: list[Bar]
    markers: list[Marker]
    span_seconds: float
    hidden_bars: int


def build_chart(
    cycle: CycleSummary,
    calls: list[ToolCallSummary],
    timeline: list[TimelineEntry],
    now: datetime,
    total_calls: int | None = None,
) -> Chart:
    """The picture of `cycle`: `calls` oldest first, decisions from `timeline`; `now` ends an open cycle's axis.

    `calls` may be the first calls only and `timeline` one page: `total_calls` (default: len(calls))
    says how many calls the cycle has, so the chart can say how many are not drawn.
    """
    ordered = sorted(calls, key=lambda call: (call.started_at, call.id))
    moments = [cycle.started_at, *(entry.at for entry in timeline)]
    moments += [call.ended_at for call in ordered if call.ended_at is not None]
    end = cycle.closed_at if cycle.closed_at is not None else max([now, *moments])
    end = max([end, *moments])
    span = max((end - cycle.started_at).total_seconds(), 1e-6)
    plot = WIDTH - LABEL_WIDTH

    def x_of(moment: datetime) -> float:
        return LABEL_WIDTH + plot * max(0.0, (moment - cycle.started_at).total_seconds()) / span

    bars = []
    for row, call in enumerate(ordered[:MOST_BARS]):
        start = x_of(call.started_at)
        stop = x_of(call.ended_at) if call.ended_at is not None else LABEL_WIDTH + plot
        took = f"{call.duration_ms} ms" if call.duration_ms is not None else "still open"
        label = call.tool_name if call.tool_name is not None else "TAMPERED"
        if call.integrity == "tampered":
            took = "TAMPERED: a row of this call does not match its chain link; its values are withheld"
        elif call.why is not None:
            label, took = "UNVERIFIABLE", call.why
        bars.append(
            Bar(
                x=start,
                y=MARKER_LANE + row * ROW_HEIGHT,
                width=max(MIN_BAR, stop - start),
                css=STATUS_CLASSES.get(call.status, "running"),
                status="running" if call.status == "started" else call.status,
                label=label,
                title=f"{label}: {call.status} ({took}){': ' + call.error if call.error else ''}",
                anchor=f"row-{call.id}",
            )
        )
    markers = [
        Marker(x=x_of(entry.at), title=f"{entry.name}: {_reasoning(entry.detail)}", anchor=f"row-{entry.id}")
        for entry in timeline
        if entry.kind == "decision"
    ]
    return Chart(
        width=WIDTH,
        height=MARKER_LANE + max(1, len(bars)) * ROW_HEIGHT + 18,
        plot_left=LABEL_WIDTH,
        bars=bars,
        markers=markers,
        span_seconds=span,
        hidden_bars=max(0, (len(ordered) if total_calls is None else total_calls) - len(bars)),
    )


def _reasoning(detail: Any) -> str:
    if isinstance(detail, dict):
        return ", ".join(f"{key}: {value}" for key, value in detail.items() if key not in ("tool", "input"))
    return "" if detail is None else str(detail)
