"""The usage dashboard: one offline HTML page whose numbers match the rows, drawn by a real browser."""

from __future__ import annotations

import random
import re
import statistics
import struct
import subprocess
import zlib
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta, timezone
from html.parser import HTMLParser
from itertools import accumulate
from pathlib import Path
from typing import Any

import pytest

from aiquery.usage.dashboard import render_dashboard, write_dashboard

CHART_IDS = ("chart-requests", "chart-tokens", "chart-tags", "chart-latency", "chart-status")
ENDPOINTS = ("claude-sonnet", "gpt-5-mini", "bge-embeddings")
EVIL = "<script>alert(1)</script>"
START = datetime(2025, 3, 1)  # naive: UTC
GENERATED = datetime(2025, 3, 3, 8, 0, tzinfo=UTC)
CHROMIUM = Path("/usr/bin/chromium")
needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="/usr/bin/chromium is missing (apt-get install -y chromium); CI installs it, so this "
    "skip only happens on machines without it",
)


def usage_rows(
    n: int = 500, span: timedelta = timedelta(days=2), seed: int = 7
) -> list[dict[str, Any]]:
    """Synthetic usage records: 3 endpoints, tags (some partial or absent), 429/500/NULL statuses."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        status = rng.choices([200, 429, 500, None], weights=[80, 9, 5, 6])[0]
        answered = status == 200
        tags = rng.choice(
            [
                {"team": rng.choice(["search", "ads", "risk"]), "project": f"p{rng.randint(1, 4)}"},
                {"team": "ads"},
                None,
            ]
        )
        rows.append(
            {
                "request_id": f"req-{i}",
                "event_time": START + span * rng.random(),
                "endpoint_name": rng.choices(ENDPOINTS, weights=[5, 3, 2])[0],
                "request_tags": tags,
                "input_tokens": rng.randint(50, 2000) if answered else None,
                "output_tokens": rng.randint(10, 800) if answered else None,
                "status_code": status,
                # Requests with no answer still have a (timeout) latency; it must not skew percentiles.
                "latency_ms": 60_000 if status is None else rng.randint(80, 4000),
                "error_message": None if answered else "failed",
            }
        )
    return rows


class Page(HTMLParser):
    """Parses a page, checking tags nest properly and collecting what lies under each element id."""

    VOID = frozenset({"meta", "link", "br", "img", "input", "hr"})

    def __init__(self, text: str) -> None:
        super().__init__()
        self.stack: list[tuple[str, dict[str, str]]] = []
        self.mismatches: list[str] = []
        self.attrs_by_id: dict[str, dict[str, str]] = {}
        self.tags_under: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self.text_under: defaultdict[str, str] = defaultdict(str)
        self.urls: list[str] = []
        self.feed(text)
        self.close()

    def _ids(self) -> list[str]:
        return [a["id"] for _, a in self.stack if "id" in a]

    def _element(self, tag: str, attrs: list[tuple[str, str | None]]) -> dict[str, str]:
        d = {k: v or "" for k, v in attrs}
        self.urls += [d[k] for k in ("src", "href") if k in d]
        if "id" in d:
            self.attrs_by_id[d["id"]] = d
        for element_id in [*self._ids(), *([d["id"]] if "id" in d else [])]:
            self.tags_under[element_id][tag] += 1
            if "mark" in d.get("class", "").split():
                self.tags_under[element_id]["mark"] += 1
        return d

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        d = self._element(tag, attrs)
        if tag not in self.VOID:
            self.stack.append((tag, d))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._element(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag in self.VOID:
            return
        if not self.stack or self.stack[-1][0] != tag:
            self.mismatches.append(tag)
            return
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        for element_id in self._ids():
            self.text_under[element_id] += data

    def titles(self, element_id: str, pattern: str) -> list[re.Match[str]]:
        return list(re.finditer(pattern, self.text_under[element_id]))


def parse(text: str) -> Page:
    page = Page(text)
    assert page.mismatches == [] and page.stack == [], "the page's tags do not nest"
    return page


def tile(page: Page, key: str) -> tuple[str, str]:
    """(label and value as shown, data-value) of a summary tile."""
    return page.text_under[f"tile-{key}"], page.attrs_by_id[f"tile-{key}"]["data-value"]


def tokens(row: dict[str, Any]) -> int:
    return (row["input_tokens"] or 0) + (row["output_tokens"] or 0)


# --- structure and numbers ----------------------------------------------------------------


def test_every_chart_is_present_with_svg_data_marks() -> None:
    page = parse(render_dashboard(usage_rows(), generated_at=GENERATED))
    for chart_id in CHART_IDS:
        assert "chart" in page.attrs_by_id[chart_id]["class"].split()
        assert page.tags_under[chart_id]["svg"] > 0, chart_id
        assert page.tags_under[chart_id]["mark"] > 0, chart_id


def test_summary_tiles_match_the_rows() -> None:
    rows = usage_rows()
    page = parse(render_dashboard(rows, generated_at=GENERATED))
    requests = len(rows)
    errors = sum(1 for r in rows if r["status_code"] != 200)
    inputs = sum(r["input_tokens"] or 0 for r in rows)
    outputs = sum(r["output_tokens"] or 0 for r in rows)
    assert 0 < errors < requests and inputs > 0
    assert tile(page, "requests") == ("Requests" + f"{requests:,}", str(requests))
    assert tile(page, "errors") == ("Errors" + f"{errors:,}", str(errors))
    assert tile(page, "error-rate")[0] == f"Error rate{errors / requests:.1%}"
    assert float(tile(page, "error-rate")[1]) == pytest.approx(errors / requests)
    assert tile(page, "input-tokens") == ("Input tokens" + f"{inputs:,}", str(inputs))
    assert tile(page, "output-tokens") == ("Output tokens" + f"{outputs:,}", str(outputs))
    assert tile(page, "endpoints") == ("Endpoints3", "3")


def test_time_charts_add_up_to_the_rows_bucketed_by_hour() -> None:
    rows = usage_rows()
    page = parse(render_dashboard(rows, generated_at=GENERATED))
    per_request = page.titles("chart-requests", r" UTC: ([\d,]+) requests")
    per_token = page.titles("chart-tokens", r" UTC: ([\d,]+) tokens")
    assert sum(int(m[1].replace(",", "")) for m in per_request) == len(rows)
    assert sum(int(m[1].replace(",", "")) for m in per_token) == sum(map(tokens, rows))
    # One mark per (hour, endpoint) that saw requests.
    hours = {
        (r["event_time"].replace(minute=0, second=0, microsecond=0), r["endpoint_name"])
        for r in rows
    }
    assert len(per_request) == len(hours)
    assert "per hour (UTC)" in page.text_under["chart-requests"]


@pytest.mark.parametrize(
    ("span", "unit"),
    [(timedelta(minutes=40), "minute"), (timedelta(days=2), "hour"), (timedelta(days=20), "day")],
)
def test_time_buckets_follow_the_range(span: timedelta, unit: str) -> None:
    rows = usage_rows(n=60, span=span)
    page = parse(render_dashboard(rows, generated_at=GENERATED))
    assert f"per {unit} (UTC)" in page.text_under["chart-requests"]
    marks = page.titles("chart-requests", r" UTC: ([\d,]+) requests")
    assert sum(int(m[1]) for m in marks) == len(rows)


def test_naive_and_aware_event_times_are_the_same_utc_instant() -> None:
    base = {"endpoint_name": "e", "status_code": 200, "input_tokens": 1, "output_tokens": 1}
    rows = [
        {**base, "event_time": datetime(2025, 3, 1, 10, 0)},
        {**base, "event_time": datetime(2025, 3, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))},
    ]
    page = parse(render_dashboard(rows, generated_at=GENERATED))
    assert [m[0] for m in page.titles("chart-requests", r"2025-03-01 10:00 UTC: 2 requests")]
    assert "2025-03-01 10:00 to 2025-03-01 10:00 UTC" in render_dashboard(rows)


def test_tokens_by_tag_value_include_rows_without_the_key_as_none() -> None:
    rows = usage_rows()
    page = parse(render_dashboard(rows, generated_at=GENERATED))
    for key in ("team", "project"):
        expected: Counter[str] = Counter()
        for r in rows:
            expected[(r["request_tags"] or {}).get(key, "(none)")] += tokens(r)
        shown: Counter[str] = Counter()
        for m in page.titles("chart-tags", rf"{key}=([^ ]+) · [^:]+: ([\d,]+) tokens"):
            shown[m[1]] += int(m[2].replace(",", ""))
        assert shown == +expected


def test_tag_charts_show_the_top_ten_values_per_key() -> None:
    rows = [
        {"endpoint_name": "e", "event_time": START, "status_code": 200, "input_tokens": 100 + i,
         "output_tokens": 0, "request_tags": {"user": f"u{i:02d}"}}
        for i in range(15)
    ]  # fmt: skip
    page = parse(render_dashboard(rows, generated_at=GENERATED))
    values = {m[1] for m in page.titles("chart-tags", r"user=(u\d+) ·")}
    assert values == {f"u{i:02d}" for i in range(5, 15)}  # the ten with the most tokens
    assert "and 5 more values" in page.text_under["chart-tags"]


def test_latency_percentiles_ignore_requests_without_a_status() -> None:
    rows = usage_rows()
    page = parse(render_dashboard(rows, generated_at=GENERATED))
    for endpoint in ENDPOINTS:
        latencies = [
            r["latency_ms"]
            for r in rows
            if r["endpoint_name"] == endpoint and r["status_code"] is not None
        ]
        cuts = statistics.quantiles(latencies, n=100, method="inclusive")
        for p in (50, 95, 99):
            assert f"{endpoint} p{p}: {cuts[p - 1]:,.0f} ms" in page.text_under["chart-latency"]
        assert f"{cuts[49]:,.0f} ms" in page.text_under["table-endpoints"]
        assert f"{cuts[94]:,.0f} ms" in page.text_under["table-endpoints"]


def test_status_chart_counts_codes_and_shows_null_as_no_answer() -> None:
    rows = usage_rows()
    page = parse(render_dashboard(rows, generated_at=GENERATED))
    expected = {
        "no answer" if c is None else str(c): n
        for c, n in Counter(r["status_code"] for r in rows).items()
    }
    shown = {
        m[1]: int(m[2].replace(",", ""))
        for m in page.titles("chart-status", r"(\d{3}|no answer): ([\d,]+) requests")
    }
    assert shown == expected
    for endpoint in ENDPOINTS:
        mine = [r for r in rows if r["endpoint_name"] == endpoint]
        errors = sum(1 for r in mine if r["status_code"] != 200)
        assert f"{endpoint}: {errors:,} errors in {len(mine):,}" in page.text_under["chart-status"]
        assert (
            f"{errors / len(mine):.1%} ({errors:,}/{len(mine):,})"
            in page.text_under["chart-status"]
        )


def test_endpoint_table_has_a_row_per_endpoint_with_its_totals() -> None:
    rows = usage_rows()
    page = parse(render_dashboard(rows, generated_at=GENERATED))
    table = page.text_under["table-endpoints"]
    for endpoint in ENDPOINTS:
        mine = [r for r in rows if r["endpoint_name"] == endpoint]
        inputs = sum(r["input_tokens"] or 0 for r in mine)
        assert f"{endpoint}{len(mine):,}" in table
        assert f"{inputs:,}" in table


def priced(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    from aiquery.endpoints.catalog import Price
    from aiquery.usage.report import price_rows

    # gpt-5-mini's price is known; bge-embeddings' and claude-sonnet's here are not.
    price_rows(rows, {"gpt-5-mini": Price(0.25, 2.0), "claude-sonnet": Price(3.0, 15.0)})
    return rows


def test_cost_tile_endpoint_column_and_cost_by_day_and_tag_add_up() -> None:
    rows = priced(usage_rows())
    saved = [{"rows": 40}, {"rows": 2}]
    page = parse(render_dashboard(rows, saved=saved, generated_at=GENERATED))
    costs = [r["cost_usd"] for r in rows if r["cost_usd"] is not None]
    total = sum(costs)
    assert 0 < len(costs) < len(rows) and total > 1
    assert tile(page, "cost") == (f"Cost (USD)${total:,.2f}", f"{total:.6f}")
    assert tile(page, "rows-saved") == ("Rows without a request42", "42")
    table = page.text_under["table-endpoints"]
    mini = sum(r["cost_usd"] or 0 for r in rows if r["endpoint_name"] == "gpt-5-mini")
    assert 0 < mini < 1 and f"${mini:.4f}" in table  # under a dollar: to the hundredth cent
    assert "bge-embeddings" in table
    by_day: dict[str, float] = defaultdict(float)
    for r in rows:
        if r["cost_usd"] is not None:
            by_day[f"{r['event_time']:%Y-%m-%d}"] += r["cost_usd"]
    cost_card = page.text_under["table-cost"]
    for day, cost in by_day.items():
        shown = f"${cost:,.2f}" if cost >= 1 else f"${cost:.4f}"
        assert f"{day}{shown}" in cost_card
    ads = sum(r["cost_usd"] or 0 for r in rows if (r["request_tags"] or {}).get("team") == "ads")
    assert f"team=ads${ads:,.2f}" in cost_card


def test_without_prices_the_cost_card_says_how_to_set_them() -> None:
    page = parse(render_dashboard(usage_rows(), generated_at=GENERATED))
    assert tile(page, "cost") == ("Cost (USD)-", "")
    assert "input_price_per_million" in page.text_under["table-cost"]


def test_page_loads_nothing_from_the_network() -> None:
    text = render_dashboard(usage_rows(), generated_at=GENERATED)
    page = parse(text)
    assert "http://" not in text and "https://" not in text
    assert all(not re.match(r"\s*(https?:)?//", url) for url in page.urls), page.urls
    assert "@import" not in text and "url(" not in text
    assert page.tags_under["html"]["script"] == 0 and page.tags_under["html"]["img"] == 0


def test_user_data_is_html_escaped() -> None:
    rows = usage_rows(n=30)
    rows[0] |= {"endpoint_name": EVIL, "request_tags": {"team": EVIL, EVIL: "x"}}
    text = render_dashboard(rows, title=EVIL, generated_at=GENERATED)
    assert "<script" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    parse(text)


def test_no_rows_render_a_page_that_says_so_without_charts() -> None:
    page = parse(text := render_dashboard([], generated_at=GENERATED))
    assert "No usage recorded yet" in text
    assert "<svg" not in text
    assert tile(page, "requests")[1] == "0"


def test_write_dashboard_creates_parents_and_writes_the_rendered_page(tmp_path: Path) -> None:
    rows = usage_rows(n=20)
    path = write_dashboard(rows, tmp_path / "a" / "b" / "usage.html", generated_at=GENERATED)
    assert path == tmp_path / "a" / "b" / "usage.html"
    assert path.read_text(encoding="utf-8") == render_dashboard(rows, generated_at=GENERATED)
    assert "generated 2025-03-03 08:00 UTC" in path.read_text(encoding="utf-8")


# --- in a real browser ------------------------------------------------------------------


def chromium(page: Path, tmp: Path, height: int = 2400) -> tuple[str, list[str], Path]:
    """Load `page` headless: (dumped DOM, console lines from the page, screenshot)."""
    png = tmp / f"{page.stem}.png"
    result = subprocess.run(
        [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={tmp / 'profile'}", "--enable-logging=stderr", "--v=0",
         f"--screenshot={png}", f"--window-size=1400,{height}", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    # Chromium logs much unrelated noise; page errors are console lines. Chromium 156 logs even
    # console.error() as "INFO:CONSOLE", so any console line from the page (which has no script) counts.
    errors = [
        line
        for line in result.stderr.splitlines()
        if "Uncaught" in line or ("CONSOLE" in line and ("ERROR" in line or page.as_uri() in line))
    ]
    return result.stdout, errors, png


def png_pixels(path: Path) -> tuple[int, int, set[bytes]]:
    """(width, height, distinct RGB colours) of an 8-bit RGB/RGBA PNG, decoded with the stdlib."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width, height, bpp = 8, bytearray(), 0, 0, 0
    while pos < len(data):
        size, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + size]
        pos += 12 + size
        if kind == b"IHDR":
            width, height, depth, color_type, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert (depth, interlace) == (8, 0) and color_type in (2, 6)
            bpp = 3 if color_type == 2 else 4
        elif kind == b"IDAT":
            idat += body
    raw, stride = zlib.decompress(idat), width * bpp
    prev: bytes | bytearray = bytes(stride)
    colors: set[bytes] = set()
    for y in range(height):
        kind, line = raw[y * (stride + 1)], raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)]
        cur = bytearray(line)
        if kind == 1:  # Sub, per channel a running sum
            for c in range(bpp):
                cur[c::bpp] = bytes(v & 255 for v in accumulate(line[c::bpp]))
        elif kind == 2:  # Up
            cur = bytearray((a + b) & 255 for a, b in zip(line, prev, strict=True))
        elif kind in (3, 4):  # Average, Paeth
            for i in range(stride):
                a, b = cur[i - bpp] if i >= bpp else 0, prev[i]
                if kind == 3:
                    cur[i] = (cur[i] + (a + b) // 2) & 255
                    continue
                c = prev[i - bpp] if i >= bpp else 0
                pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
                cur[i] = (cur[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        colors.update(bytes(cur[i : i + 3]) for i in range(0, stride, bpp))
        prev = cur
    return width, height, colors


@needs_chromium
def test_console_check_catches_a_page_error(tmp_path: Path) -> None:
    # Guards the check below: if Chromium stops logging page errors this way, it would pass vacuously.
    page = tmp_path / "broken.html"
    page.write_text("<!DOCTYPE html><p>x</p><script>console.error('boom'); missing();</script>")
    _, errors, _ = chromium(page, tmp_path, height=300)
    assert any("boom" in e for e in errors) and any("Uncaught" in e for e in errors)


@needs_chromium
def test_dashboard_renders_in_chromium_without_errors(tmp_path: Path) -> None:
    rows = usage_rows()
    page = write_dashboard(rows, tmp_path / "dashboard.html", generated_at=GENERATED)
    dom, errors, png = chromium(page, tmp_path)
    assert errors == []
    rendered = parse(dom)
    for chart_id in CHART_IDS:
        assert (
            rendered.tags_under[chart_id]["svg"] > 0 and rendered.tags_under[chart_id]["mark"] > 0
        )
    width, height, colors = png_pixels(png)
    assert (width, height) == (1400, 2400)
    assert len(colors) > 50, "the screenshot is (nearly) blank"
    # Every endpoint's colour was painted: the SVG charts really rendered.
    fills = {m[1] for m in re.finditer(r'class="mark"[^>]*fill="#([0-9a-f]{6})"', dom)}
    assert len(fills) >= len(ENDPOINTS)
    assert {bytes.fromhex(f) for f in fills} <= colors


@needs_chromium
def test_empty_dashboard_renders_in_chromium_without_errors(tmp_path: Path) -> None:
    page = write_dashboard([], tmp_path / "empty.html", generated_at=GENERATED)
    dom, errors, png = chromium(page, tmp_path, height=900)
    assert errors == []
    assert "No usage recorded yet" in dom and "<svg" not in dom
    assert len(png_pixels(png)[2]) > 10


def test_a_missing_usage_table_is_a_config_error_naming_it_and_the_fix(tmp_path: Path) -> None:
    from aiquery.errors import ConfigError
    from aiquery.usage.report import load_rows

    with pytest.raises(ConfigError) as caught:
        load_rows(tmp_path / "usage")
    message = str(caught.value)
    assert f"no usage table at {tmp_path / 'usage'}" in message
    assert "_delta_log" in message and "AIQUERY_USAGE_LOCATION" in message
