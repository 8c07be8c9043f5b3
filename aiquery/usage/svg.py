"""SVG chart primitives for the usage dashboard.

Plain functions that return markup strings: stacked time bars, horizontal bars, grouped
vertical bars, and the HTML legend that goes with them. Nothing here knows about usage rows;
labels and tooltips may be user data, so every text put into markup passes through `esc`.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime


def esc(text: object) -> str:
    """`text` as a string safe inside HTML/SVG text and double- or single-quoted attributes."""
    return html.escape(str(text), quote=True)


def compact(v: float) -> str:
    """A short human form of a number: 1234 -> "1.23k", 5e6 -> "5M", 7 -> "7", 0.25 -> "0.25"."""
    for div, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= div:
            return f"{v / div:.3g}{suffix}"
    return str(int(v)) if v == int(v) else f"{v:.3g}"


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: max(limit - 1, 1)] + "…"


@dataclass(frozen=True)
class TimeUnit:
    """A time-bucket size for `time_chart`: its name, length, tooltip format and label spacings."""

    name: str
    seconds: int
    tooltip: str  # strftime format of a bucket in tooltips
    steps: tuple[int, ...]  # candidate label spacings, in buckets


MINUTE = TimeUnit("minute", 60, "%Y-%m-%d %H:%M", (1, 2, 5, 10, 15, 30, 60, 120, 180))
HOUR = TimeUnit("hour", 3600, "%Y-%m-%d %H:00", (1, 2, 3, 6, 12, 24, 48))
DAY = TimeUnit("day", 86400, "%Y-%m-%d", (1, 2, 7, 14, 28, 56, 91, 182, 364, 728))


def _nice_ticks(top: float, count: int = 5) -> list[float]:
    """0 to a round number >= top, in 1, 2 or 5 times 10**n steps of at least 1 (every measure here is whole)."""
    if top <= 0:
        return [0.0, 1.0]
    raw = top / count
    mag = 10 ** math.floor(math.log10(raw))
    step = max(next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw), 1)
    return [i * step for i in range(math.ceil(top / step - 1e-9) + 1)]


def _svg(width: int, height: int, label: str, parts: list[str]) -> str:
    return (
        f'<svg viewBox="0 0 {width} {height}" role="img" aria-label="{esc(label)}" '
        f'preserveAspectRatio="xMidYMid meet">{"".join(parts)}</svg>'
    )


def _y_axis(
    ticks: list[float], y_of: Callable[[float], float], left: float, right: float
) -> list[str]:
    parts = []
    for t in ticks:
        y = y_of(t)
        parts.append(f'<line class="gridline" x1="{left}" x2="{right}" y1="{y:.1f}" y2="{y:.1f}"/>')
        parts.append(f'<text x="{left - 8}" y="{y + 4:.1f}" text-anchor="end">{compact(t)}</text>')
    return parts


def time_chart(
    label: str,
    buckets: Sequence[datetime],
    unit: TimeUnit,
    series: Sequence[tuple[str, str, Sequence[float]]],
    noun: str,
) -> str:
    """Stacked bars per time bucket, one colour per series.

    `buckets` are consecutive UTC bucket starts `unit` apart; each series is (name, colour,
    one value per bucket). Tooltips read "name · bucket UTC: value noun".
    """
    width, height, left, right, top, bottom = 960, 270, 56, 950, 12, 236
    n = len(buckets)
    ticks = _nice_ticks(max(sum(values[i] for _, _, values in series) for i in range(n)))

    def y_of(v: float) -> float:
        return bottom - (bottom - top) * v / ticks[-1]

    parts = _y_axis(ticks, y_of, left, right)
    slot = (right - left) / n
    bar = max(slot * 0.78, 0.8)
    step = next((s for s in unit.steps if n / s <= 9), unit.steps[-1])
    for i, bucket in enumerate(buckets):
        x, base, when = left + i * slot + (slot - bar) / 2, 0.0, bucket.strftime(unit.tooltip)
        for name, color, values in series:
            if values[i] <= 0:
                continue
            y0, y1 = y_of(base), y_of(base + values[i])
            base += values[i]
            parts.append(
                f'<rect class="mark" x="{x:.2f}" y="{y1:.2f}" width="{bar:.2f}" height="{y0 - y1:.2f}" '
                f'fill="{color}"><title>{esc(name)} · {when} UTC: {values[i]:,.0f} {noun}</title></rect>'
            )
        if int(bucket.timestamp()) // unit.seconds % step == 0:
            cx = left + (i + 0.5) * slot
            text = bucket.strftime("%b %d" if (bucket.hour, bucket.minute) == (0, 0) else "%H:%M")
            parts.append(
                f'<line class="axis" x1="{cx:.1f}" x2="{cx:.1f}" y1="{bottom}" y2="{bottom + 5}"/>'
            )
            parts.append(f'<text x="{cx:.1f}" y="{bottom + 19}" text-anchor="middle">{text}</text>')
    parts.append(f'<line class="axis" x1="{left}" x2="{right}" y1="{bottom}" y2="{bottom}"/>')
    return _svg(width, height, label, parts)


def hbar_chart(
    label: str, items: Sequence[tuple[str, Sequence[tuple[str, float, str]], str]]
) -> str:
    """Horizontal bars: (row label, stacked segments of (colour, value, tooltip), value text)."""
    width, row_h, left, right = 480, 26, 150, 400
    top_v = max(sum(v for _, v, _ in segments) for _, segments, _ in items) or 1.0
    parts = [f'<line class="axis" x1="{left}" x2="{left}" y1="2" y2="{len(items) * row_h + 2}"/>']
    for r, (name, segments, value_text) in enumerate(items):
        y, x = 2 + r * row_h, float(left)
        parts.append(
            f'<text x="{left - 8}" y="{y + row_h / 2 + 4:.1f}" text-anchor="end" class="label">'
            f"<title>{esc(name)}</title>{esc(_short(name, 22))}</text>"
        )
        for color, v, tip in segments:
            w = (right - left) * v / top_v
            parts.append(
                f'<rect class="mark" x="{x:.2f}" y="{y + 5}" width="{w:.2f}" height="{row_h - 10}" '
                f'fill="{color}"><title>{esc(tip)}</title></rect>'
            )
            x += w
        parts.append(f'<text x="{x + 6:.1f}" y="{y + row_h / 2 + 4:.1f}">{esc(value_text)}</text>')
    return _svg(width, len(items) * row_h + 4, label, parts)


def vbar_chart(
    label: str, groups: Sequence[tuple[str, Sequence[tuple[str, float, float, str]]]]
) -> str:
    """Grouped vertical bars: (group label, bars of (colour, opacity, value, tooltip))."""
    width, height, left, right, top, bottom = 480, 270, 48, 472, 18, 236
    ticks = _nice_ticks(max(v for _, bars in groups for _, _, v, _ in bars))

    def y_of(v: float) -> float:
        return bottom - (bottom - top) * v / ticks[-1]

    parts = _y_axis(ticks, y_of, left, right)
    slot = (right - left) / len(groups)
    bar = min(slot * 0.8 / max(len(bars) for _, bars in groups), 56)
    for g, (name, bars) in enumerate(groups):
        gx = left + g * slot + (slot - bar * len(bars)) / 2
        for b, (color, opacity, v, tip) in enumerate(bars):
            x, y = gx + b * bar, y_of(v)
            parts.append(
                f'<rect class="mark" x="{x + 1:.2f}" y="{y:.2f}" width="{bar - 2:.2f}" '
                f'height="{bottom - y:.2f}" fill="{color}" fill-opacity="{opacity}">'
                f"<title>{esc(tip)}</title></rect>"
            )
            if bar >= 26:
                parts.append(
                    f'<text x="{x + bar / 2:.1f}" y="{y - 4:.1f}" text-anchor="middle" '
                    f'class="value">{compact(v)}</text>'
                )
        # Labels that do not fit the slot wrap at spaces ("no answer"), then get cut short.
        fit = int(slot / 6.5)
        lines = name.split(" ") if len(name) > fit else [name]
        spans = "".join(
            f'<tspan x="{left + (g + 0.5) * slot:.1f}" dy="{13 if i else 0}">{esc(_short(line, fit))}</tspan>'
            for i, line in enumerate(lines[:2])
        )
        parts.append(
            f'<text y="{bottom + 18}" text-anchor="middle" class="label">'
            f"<title>{esc(name)}</title>{spans}</text>"
        )
    parts.append(f'<line class="axis" x1="{left}" x2="{right}" y1="{bottom}" y2="{bottom}"/>')
    return _svg(width, height, label, parts)


def legend(items: Sequence[tuple[str, str, float]]) -> str:
    """An HTML legend: one swatch per (name, colour, opacity), in order."""
    lis = "".join(
        f'<li><span class="swatch" style="background:{color};opacity:{opacity}"></span>{esc(name)}</li>'
        for name, color, opacity in items
    )
    return f'<ul class="legend">{lis}</ul>'
