"""Charts as inline SVG, rendered on the server: no JavaScript library, nothing from a CDN.

`line_chart` draws series over time (lines, areas or stacked areas) with a nice y axis, time
labels, a legend and one hover target per point in time whose tooltip lists every series.
`bar_chart` draws a horizontal leaderboard. Every piece of text that comes from data (model
names, emails, metadata values) passes through `escape`, so the markup is safe to inline.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from dataaccess.metrics import Series

PALETTE = (
    "#4f46e5",
    "#0ea5e9",
    "#10b981",
    "#f59e0b",
    "#ef4444",
    "#8b5cf6",
    "#ec4899",
    "#14b8a6",
    "#84cc16",
    "#64748b",
    "#f97316",
)
WIDTH, HEIGHT = 640, 230
LEFT, RIGHT, TOP, BOTTOM = 58, 14, 14, 30
X_LABELS = 6
Y_TICKS = 4


def color(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def _compact(value: float) -> str:
    magnitude = abs(value)
    for size, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if magnitude >= size:
            text = f"{value / size:.1f}".removesuffix(".0")
            return f"{text}{suffix}"
    if magnitude == 0 or magnitude >= 10 or float(value).is_integer():
        return f"{value:,.0f}"
    return f"{value:.2g}" if magnitude < 1 else f"{value:.1f}"


def format_value(value: float | None, unit: str = "") -> str:
    """A number for axes and tooltips: `1.2k`, `$0.42`, `250 ms`, `1.5 s`, `12%`."""
    if value is None:
        return "—"
    if unit == "ms":
        if value >= 1000:
            return f"{value / 1000:.2f}".rstrip("0").rstrip(".") + " s"
        return f"{value:.0f} ms"
    if unit == "$":
        if value == 0:
            return "$0"
        return f"${value:,.2f}" if value >= 1 else f"${value:.4f}".rstrip("0")
    if unit == "%":
        return f"{value * 100:.1f}%"
    return _compact(value)


def nice_max(value: float) -> float:
    """The smallest 1, 2, 2.5 or 5 x 10^k step times Y_TICKS that covers `value`."""
    if value <= 0:
        return 1.0
    raw = value / Y_TICKS
    power = 10.0 ** math.floor(math.log10(raw))
    for factor in (1.0, 2.0, 2.5, 5.0, 10.0):
        if factor * power >= raw:
            return factor * power * Y_TICKS
    return 10.0 * power * Y_TICKS


def _time_format(times: Sequence[datetime], interval: int) -> Callable[[datetime], str]:
    span = (times[-1] - times[0]).total_seconds() if len(times) > 1 else 0
    if interval >= 86400:
        return lambda t: t.strftime("%b %d")
    if span >= 86400:
        return lambda t: t.strftime("%b %d %H:%M")
    return lambda t: t.strftime("%H:%M")


@dataclass(frozen=True)
class _Plot:
    count: int
    top: float

    @property
    def width(self) -> float:
        return WIDTH - LEFT - RIGHT

    @property
    def height(self) -> float:
        return HEIGHT - TOP - BOTTOM

    def x(self, index: int) -> float:
        if self.count <= 1:
            return LEFT + self.width / 2
        return LEFT + self.width * index / (self.count - 1)

    def y(self, value: float) -> float:
        return TOP + self.height * (1 - value / self.top)


def _path(points: Sequence[tuple[float, float] | None]) -> str:
    """An SVG path that breaks where a point is missing."""
    parts: list[str] = []
    pen_down = False
    for point in points:
        if point is None:
            pen_down = False
            continue
        parts.append(f"{'L' if pen_down else 'M'}{point[0]:.1f},{point[1]:.1f}")
        pen_down = True
    return " ".join(parts)


def line_chart(
    times: Sequence[datetime],
    series: Sequence[Series],
    *,
    interval: int,
    label: str,
    unit: str = "",
    area: bool = False,
    stacked: bool = False,
    testid: str = "",
) -> SafeString:
    """Series over time as an inline SVG figure with its legend."""
    count = len(times)
    values: list[list[float | None]] = [list(s.values) for s in series]
    if stacked:
        running = [0.0] * count
        stacked_values: list[list[float | None]] = []
        for row in values:
            running = [running[i] + (row[i] or 0.0) for i in range(count)]
            stacked_values.append(list(running))
        values = stacked_values
    peak = max((v for row in values for v in row if v is not None), default=0.0)
    plot = _Plot(count, nice_max(peak))
    out = [
        f'<svg class="chart-svg" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(label)}" preserveAspectRatio="xMidYMid meet">'
    ]
    for tick in range(Y_TICKS + 1):
        value = plot.top * tick / Y_TICKS
        y = plot.y(value)
        out.append(
            f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text class="axis" x="{LEFT - 8}" y="{y + 4:.1f}" text-anchor="end">'
            f"{escape(format_value(value, unit))}</text>"
        )
    if count:
        fmt = _time_format(times, interval)
        step = max(1, math.ceil(count / X_LABELS))
        for index in range(0, count, step):
            out.append(
                f'<text class="axis" x="{plot.x(index):.1f}" y="{HEIGHT - 10}" '
                f'text-anchor="middle">{escape(fmt(times[index]))}</text>'
            )
    baseline = plot.y(0)
    has_data = peak > 0
    previous: list[float | None] | None = None
    for index, row in enumerate(values):
        points = [None if v is None else (plot.x(i), plot.y(v)) for i, v in enumerate(row)]
        stroke = color(index)
        if (area or stacked) and count > 1:
            lower = previous if stacked and previous is not None else [0.0] * count
            upper_pts = [(plot.x(i), plot.y(v or 0.0)) for i, v in enumerate(row)]
            lower_pts = [(plot.x(i), plot.y(lower[i] or 0.0)) for i in range(count)][::-1]
            polygon = " ".join(f"{x:.1f},{y:.1f}" for x, y in upper_pts + lower_pts)
            opacity = 0.55 if stacked else 0.14
            out.append(
                f'<polygon points="{polygon}" fill="{stroke}" fill-opacity="{opacity}" '
                'stroke="none"/>'
            )
        if count == 1 and points[0] is not None:
            x, y = points[0]
            out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{stroke}"/>')
        else:
            out.append(
                f'<path d="{_path(points)}" fill="none" stroke="{stroke}" stroke-width="2" '
                'stroke-linejoin="round" stroke-linecap="round"/>'
            )
        previous = row
    out.append(
        f'<line class="axis-line" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{baseline:.1f}" '
        f'y2="{baseline:.1f}"/>'
    )
    if not has_data:
        out.append(
            f'<text class="empty-label" x="{LEFT + plot.width / 2:.1f}" '
            f'y="{TOP + plot.height / 2:.1f}" text-anchor="middle">No data in this range</text>'
        )
    if count:
        fmt_tip = _time_format(times, min(interval, 3600))
        slot = plot.width / max(count - 1, 1)
        for i in range(count):
            lines = [fmt_tip(times[i])] + [
                f"{s.name}: {format_value(s.values[i], unit)}" for s in series
            ]
            x = plot.x(i) - slot / 2
            out.append(
                f'<rect class="hover" x="{max(x, LEFT):.1f}" y="{TOP}" '
                f'width="{slot:.1f}" height="{plot.height:.1f}">'
                f"<title>{escape(chr(10).join(lines))}</title></rect>"
            )
    out.append("</svg>")
    legend = "".join(
        f'<li><span class="swatch" style="background:{color(i)}"></span>'
        f'<span class="legend-name">{escape(s.name)}</span>'
        f'<span class="legend-total">{escape(format_value(s.total, unit))}</span></li>'
        for i, s in enumerate(series)
    )
    html = (
        f'<figure class="chart" data-testid="{escape(testid)}" data-points="{count}" '
        f'data-series="{len(series)}">{"".join(out)}<ul class="legend">{legend}</ul></figure>'
    )
    return mark_safe(html)  # noqa: S308 - every data-derived text above went through escape()


@dataclass(frozen=True)
class Bar:
    label: str
    value: float
    note: str = ""


BAR_WIDTH, BAR_ROW, BAR_LABEL = 360, 26, 132
BAR_NAME_CHARS = 20


def bar_chart(bars: Sequence[Bar], *, label: str, unit: str = "", testid: str = "") -> SafeString:
    """A horizontal bar chart (a leaderboard), largest first as given."""
    if not bars:
        empty = f'<p class="empty chart-empty" data-testid="{escape(testid)}">No data here.</p>'
        return mark_safe(empty)  # noqa: S308 - escaped above
    top = max(b.value for b in bars) or 1.0
    height = BAR_ROW * len(bars) + 4
    span = BAR_WIDTH - BAR_LABEL - 56
    out = [
        f'<svg class="chart-svg bars" viewBox="0 0 {BAR_WIDTH} {height}" role="img" '
        f'aria-label="{escape(label)}">'
    ]
    for index, bar in enumerate(bars):
        y = index * BAR_ROW + 4
        width = max(span * bar.value / top, 2.0)
        name = bar.label
        if len(name) > BAR_NAME_CHARS:
            name = name[: BAR_NAME_CHARS - 1] + "…"
        tip = f"{bar.label}: {format_value(bar.value, unit)}" + (
            f" · {bar.note}" if bar.note else ""
        )
        out.append(
            f"<g><title>{escape(tip)}</title>"
            f'<text class="bar-label" x="{BAR_LABEL - 8}" y="{y + 15}" text-anchor="end">'
            f"{escape(name)}</text>"
            f'<rect x="{BAR_LABEL}" y="{y + 3}" width="{width:.1f}" height="{BAR_ROW - 10}" '
            f'rx="3" fill="{PALETTE[0]}" fill-opacity="{max(1 - index * 0.06, 0.4):.2f}"/>'
            f'<text class="bar-value" x="{BAR_LABEL + width + 6:.1f}" y="{y + 15}">'
            f"{escape(format_value(bar.value, unit))}</text></g>"
        )
    out.append("</svg>")
    return mark_safe(  # noqa: S308 - every data-derived text above went through escape()
        f'<figure class="chart chart-bars" data-testid="{escape(testid)}" '
        f'data-bars="{len(bars)}">{"".join(out)}</figure>'
    )
