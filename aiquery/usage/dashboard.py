"""A self-contained HTML dashboard of usage records: summary tiles, inline-SVG charts, a table.

The page works offline and can be attached or mailed as is: no JavaScript, no CDN, no web
fonts; every chart is inline SVG (drawn by `aiquery.usage.svg`), with native `<title>` tooltips.
Endpoint names and tag values are user data, so every text taken from a row passes through `esc`
(`html.escape`).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiquery.usage.style import CSS
from aiquery.usage.svg import (
    DAY,
    HOUR,
    MINUTE,
    compact,
    esc,
    hbar_chart,
    legend,
    time_chart,
    vbar_chart,
)

_Row = Mapping[str, Any]

# Endpoint colours (Tableau 10, red moved back: red means "error" on this page).
_PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#76b7b2",
           "#edc948", "#9c755f", "#ff9da7", "#e15759", "#bab0ac")  # fmt: skip
# By status class; "none" is a request that got no answer.
_STATUS_COLORS = {
    "2": "#59a14f",
    "4": "#f28e2b",
    "5": "#e15759",
    "none": "#8c959f",
    "other": "#76b7b2",
}
_PERCENTILES = ((50, 1.0), (95, 0.62), (99, 0.32))  # (percentile, bar opacity)
_MAX_TAG_VALUES = 10
_NO_ANSWER = "no answer"
_NONE_TAG = "(none)"


@dataclass
class _Totals:
    requests: int = 0
    errors: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float | None = None  # USD, of the rows with a known price
    latencies: list[int] = field(default_factory=list)

    def add(self, row: _Row) -> None:
        self.requests += 1
        self.errors += _is_error(row)
        self.input_tokens += row.get("input_tokens") or 0
        self.output_tokens += row.get("output_tokens") or 0
        if row.get("cost_usd") is not None:
            self.cost = (self.cost or 0.0) + row["cost_usd"]
        if row.get("status_code") is not None and row.get("latency_ms") is not None:
            self.latencies.append(int(row["latency_ms"]))

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    def latency(self, p: float) -> float | None:
        return _percentile(self.latencies, p)


def _is_error(row: _Row) -> bool:
    """A request counts as an error unless it got HTTP 200 (no answer at all is an error too)."""
    return row.get("status_code") != 200


def _percentile(values: Sequence[float], p: float) -> float | None:
    """The p-th percentile (0-100), interpolating linearly between ranks; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    lo = math.floor(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def _utc(t: datetime) -> datetime:
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def _tokens(row: _Row) -> int:
    return int(row.get("input_tokens") or 0) + int(row.get("output_tokens") or 0)


def _endpoint(row: _Row) -> str:
    return str(row.get("endpoint_name") or "(unknown)")


def _tags(row: _Row) -> Mapping[str, Any]:
    tags = row.get("request_tags")
    if not tags:
        return {}
    # Spark gives a dict; Arrow-backed pandas gives a MAP as a list of (key, value) pairs.
    return tags if isinstance(tags, Mapping) else dict(tags)


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:,.0f} ms"


def _card(chart_id: str, title: str, sub: str, body: str) -> str:
    return (
        f'<section class="card chart" id="{chart_id}"><h2>{esc(title)}</h2>'
        f'<p class="sub">{esc(sub)}</p>{body}</section>'
    )


def _status_label(code: int | None) -> str:
    return _NO_ANSWER if code is None else str(code)


def _status_color(code: int | None) -> str:
    if code is None:
        return _STATUS_COLORS["none"]
    return _STATUS_COLORS.get(str(code)[:1], _STATUS_COLORS["other"])


def _tag_charts(rows: Sequence[_Row], colors: Mapping[str, str]) -> str:
    keys = sorted({str(k) for row in rows for k in _tags(row)})
    if not keys:
        return '<p class="empty">No request tags recorded.</p>'
    figures = []
    for key in keys:
        per_value: dict[str, Counter[str]] = defaultdict(Counter)
        for row in rows:
            value = _tags(row).get(key)
            per_value[_NONE_TAG if value is None else str(value)][_endpoint(row)] += _tokens(row)
        ranked = sorted(per_value.items(), key=lambda kv: (-kv[1].total(), kv[0]))
        items = [
            (
                value,
                [
                    (colors[ep], float(t), f"{key}={value} · {ep}: {t:,} tokens")
                    for ep, t in sorted(c.items())
                ],
                compact(c.total()),
            )
            for value, c in ranked[:_MAX_TAG_VALUES]
        ]
        more = len(ranked) - _MAX_TAG_VALUES
        note = f'<p class="sub">and {more:,} more values</p>' if more > 0 else ""
        chart = hbar_chart(f"Tokens by {key}", items)
        figures.append(
            f'<figure class="tag"><figcaption>{esc(key)}</figcaption>{chart}{note}</figure>'
        )
    return f'<div class="tags">{"".join(figures)}</div>'


_TABLE_HEAD = ("Endpoint", "Requests", "Errors", "Error rate", "Input tokens", "Output tokens",
               "Cost (USD)", "p50 latency", "p95 latency")  # fmt: skip


def _usd(cost: float | None) -> str:
    if cost is None:
        return "-"
    return f"${cost:,.2f}" if cost >= 1 or not cost else f"${cost:.4f}"


def _cost_section(rows: Sequence[_Row]) -> str:
    """Cost by day and by request-tag value: two tables, from each row's `cost_usd`."""
    by_day: dict[str, float] = defaultdict(float)
    by_tag: dict[str, float] = defaultdict(float)
    for row in rows:
        cost = row.get("cost_usd")
        if cost is None:
            continue
        by_day[f"{_utc(row['event_time']):%Y-%m-%d}"] += cost
        for key, value in _tags(row).items():
            by_tag[f"{key}={value}"] += cost
    if not by_day:
        return _card(
            "table-cost",
            "Cost",
            "No request has a known price",
            '<p class="empty">Set input_price_per_million and output_price_per_million in '
            "the endpoints file to see costs.</p>",
        )

    def table(title: str, items: list[tuple[str, float]]) -> str:
        body = "".join(f"<tr><td>{esc(k)}</td><td>{_usd(v)}</td></tr>" for k, v in items)
        return (
            f"<figure><figcaption>{title}</figcaption><table><thead><tr><th>{title.split()[-1]}"
            f"</th><th>Cost (USD)</th></tr></thead><tbody>{body}</tbody></table></figure>"
        )

    tags = sorted(by_tag.items(), key=lambda kv: (-kv[1], kv[0]))[: 2 * _MAX_TAG_VALUES]
    body = '<div class="split">' + table("By day", sorted(by_day.items()))
    body += (table("By tag", tags) if tags else "") + "</div>"
    sub = "From each endpoint's price per million input and output tokens (the endpoints file)"
    return _card("table-cost", "Cost", sub, body)


def _table(per_ep: Mapping[str, _Totals], colors: Mapping[str, str]) -> str:
    head = "".join(f"<th>{h}</th>" for h in _TABLE_HEAD)
    body = "".join(
        f'<tr><td><span class="swatch" style="background:{colors[ep]}"></span>{esc(ep)}</td>'
        f"<td>{t.requests:,}</td><td>{t.errors:,}</td><td>{t.error_rate:.1%}</td>"
        f"<td>{t.input_tokens:,}</td><td>{t.output_tokens:,}</td><td>{_usd(t.cost)}</td>"
        f"<td>{_ms(t.latency(50))}</td><td>{_ms(t.latency(95))}</td></tr>"
        for ep, t in sorted(per_ep.items(), key=lambda kv: (-kv[1].requests, kv[0]))
    )
    return (
        '<section class="card" id="table-endpoints"><h2>Endpoints</h2>'
        f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></section>"
    )


def _time_sections(
    rows: Sequence[_Row], eps: list[str], colors: Mapping[str, str]
) -> tuple[str, str]:
    """The requests and tokens charts, and the header's line saying which time range they cover."""
    times = [_utc(r["event_time"]) for r in rows if r.get("event_time") is not None]
    if not times:
        return '<p class="empty">No event times recorded.</p>', "no timestamps"
    start, end = min(times), max(times)
    span = (end - start).total_seconds()
    unit = MINUTE if span <= 3 * 3600 else HOUR if span <= 4 * 86400 else DAY
    first = int(start.timestamp()) // unit.seconds
    n = int(end.timestamp()) // unit.seconds - first + 1
    buckets = [datetime.fromtimestamp((first + i) * unit.seconds, UTC) for i in range(n)]
    requests = {ep: [0.0] * n for ep in eps}
    tokens = {ep: [0.0] * n for ep in eps}
    for row in rows:
        if row.get("event_time") is not None:
            i = int(_utc(row["event_time"]).timestamp()) // unit.seconds - first
            requests[_endpoint(row)][i] += 1
            tokens[_endpoint(row)][i] += _tokens(row)
    legend_html = legend([(ep, colors[ep], 1.0) for ep in eps])
    by = f"per {unit.name} (UTC), stacked by endpoint"
    html_ = ""
    for chart_id, title, sub, data, noun in (
        ("chart-requests", "Requests over time", f"Requests {by}", requests, "requests"),
        ("chart-tokens", "Tokens over time", f"Input + output tokens {by}", tokens, "tokens"),
    ):
        series = [(ep, colors[ep], data[ep]) for ep in eps]
        html_ += _card(
            chart_id, title, sub, legend_html + time_chart(title, buckets, unit, series, noun)
        )
    length = (
        f"{span / 86400:.1f} days" if span >= 86400
        else f"{span / 3600:.1f} hours" if span >= 3600
        else f"{span / 60:.0f} minutes"
    )  # fmt: skip
    covered = f"{start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC ({length}, by {unit.name})"
    return html_, covered


def _latency_section(per_ep: Mapping[str, _Totals], colors: Mapping[str, str]) -> str:
    groups: list[tuple[str, list[tuple[str, float, float, str]]]] = []
    for ep, t in sorted(per_ep.items()):
        bars = [
            (colors[ep], op, float(v), f"{ep} p{p}: {v:,.0f} ms")
            for p, op in _PERCENTILES
            if (v := t.latency(p)) is not None
        ]
        if bars:
            groups.append((ep, bars))
    if not groups:
        body = '<p class="empty">No answered requests with a latency yet.</p>'
    else:
        legend_html = legend([(f"p{p}", "#57606a", op) for p, op in _PERCENTILES])
        body = legend_html + vbar_chart("Latency percentiles per endpoint", groups)
    return _card("chart-latency", "Latency percentiles", "latency_ms of answered requests", body)


def _status_section(
    rows: Sequence[_Row], per_ep: Mapping[str, _Totals], colors: Mapping[str, str]
) -> str:
    codes = Counter(r.get("status_code") for r in rows)
    ordered = sorted(codes.items(), key=lambda kv: (kv[0] is None, kv[0] or 0))
    groups = [
        (
            _status_label(c),
            [(_status_color(c), 1.0, float(k), f"{_status_label(c)}: {k:,} requests")],
        )
        for c, k in ordered
    ]
    rates = [
        (
            ep,
            [(colors[ep], t.error_rate, f"{ep}: {t.errors:,} errors in {t.requests:,}")],
            f"{t.error_rate:.1%} ({t.errors:,}/{t.requests:,})",
        )
        for ep, t in sorted(per_ep.items())
    ]
    body = (
        '<div class="split"><figure><figcaption>Requests per status code</figcaption>'
        + vbar_chart("Requests per status code", groups)
        + "</figure><figure><figcaption>Error rate per endpoint</figcaption>"
        + hbar_chart("Error rate per endpoint", rates)
        + "</figure></div>"
    )
    sub = f'An error is any status but 200; a NULL status is "{_NO_ANSWER}"'
    return _card("chart-status", "Status codes and errors", sub, body)


def render_dashboard(
    rows: Sequence[Mapping[str, Any]],
    *,
    saved: Sequence[Mapping[str, Any]] = (),
    title: str = "aiquery usage",
    generated_at: datetime | None = None,
) -> str:
    """One self-contained HTML page summarising usage records (dicts with the usage table's columns).

    Naive `event_time`s are taken as UTC. The page needs nothing from the network: CSS is inline and
    the charts are inline SVG, each in an element of class `chart` with a stable id (`chart-requests`,
    `chart-tokens`, `chart-tags`, `chart-latency`, `chart-status`). Costs come from each row's
    `cost_usd` (`report.price_rows`); `saved` are the saved-rows records (rows answered without
    a request). With no rows, the page says so.
    """
    generated = _utc(generated_at or datetime.now(UTC))
    totals, per_ep = _Totals(), defaultdict[str, _Totals](_Totals)
    for row in rows:
        totals.add(row)
        per_ep[_endpoint(row)].add(row)
    t = totals
    rows_saved = sum(r.get("rows") or 0 for r in saved)
    tiles = [
        ("requests", "Requests", f"{t.requests:,}", str(t.requests)),
        ("errors", "Errors", f"{t.errors:,}", str(t.errors)),
        ("error-rate", "Error rate", f"{t.error_rate:.1%}", f"{t.error_rate:.6f}"),
        ("input-tokens", "Input tokens", f"{t.input_tokens:,}", str(t.input_tokens)),
        ("output-tokens", "Output tokens", f"{t.output_tokens:,}", str(t.output_tokens)),
        ("cost", "Cost (USD)", _usd(t.cost), "" if t.cost is None else f"{t.cost:.6f}"),
        ("rows-saved", "Rows without a request", f"{rows_saved:,}", str(rows_saved)),
        ("endpoints", "Endpoints", f"{len(per_ep):,}", str(len(per_ep))),
    ]
    bad = " bad" if t.errors else ""
    tiles_html = "".join(
        f'<div class="tile{bad if key.startswith("error") else ""}" id="tile-{key}" '
        f'data-value="{raw}"><div class="tile-label">{label}</div>'
        f'<div class="tile-value">{value}</div></div>'
        for key, label, value, raw in tiles
    )
    if rows:
        eps = sorted(per_ep)
        colors = {ep: _PALETTE[i % len(_PALETTE)] for i, ep in enumerate(eps)}
        time_html, covered = _time_sections(rows, eps, colors)
        sub = f"Input + output tokens per tag value, top {_MAX_TAG_VALUES} values per key"
        body = (
            time_html
            + _card("chart-tags", "Tokens by request tag", sub, _tag_charts(rows, colors))
            + '<div class="grid2">'
            + _latency_section(per_ep, colors)
            + _status_section(rows, per_ep, colors)
            + "</div>"
            + _table(per_ep, colors)
            + _cost_section(rows)
        )
    else:
        covered = "nothing yet"
        body = (
            '<section class="card empty-page"><h2>No usage recorded yet</h2><p class="sub">'
            "Rows appear once ai_query has sent requests and the usage table has been committed."
            "</p></section>"
        )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<link rel="icon" href="data:,"><title>{esc(title)}</title><style>{CSS}</style></head>'
        f'<body><main><header><h1>{esc(title)}</h1><p class="meta">{esc(covered)}'
        f" · generated {generated:%Y-%m-%d %H:%M} UTC</p></header>"
        f'<div class="tiles">{tiles_html}</div>{body}'
        "<footer>aiquery · from the ai_gateway.usage table · a self-contained page</footer>"
        "</main></body></html>\n"
    )


def write_dashboard(
    rows: Sequence[Mapping[str, Any]],
    path: str | Path,
    *,
    saved: Sequence[Mapping[str, Any]] = (),
    title: str = "aiquery usage",
    generated_at: datetime | None = None,
) -> Path:
    """Render the dashboard to `path` (UTF-8, parent directories created) and return the path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    page = render_dashboard(rows, saved=saved, title=title, generated_at=generated_at)
    out.write_text(page, encoding="utf-8")
    return out
