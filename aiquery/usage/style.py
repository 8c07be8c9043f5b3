"""The usage dashboard's look: one inline stylesheet (the page loads nothing), light,
with tabular figures; the charts' SVG text takes the same font."""

from __future__ import annotations

_FONT = 'system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif'
CSS = f"""
:root{{--fg:#1f2328;--muted:#656d76;--line:#d0d7de;--grid:#eaeef2;--bg:#f6f8fa;--card:#fff}}
*{{box-sizing:border-box}}
body{{margin:0;background:var(--bg);color:var(--fg);font:14px/1.45 {_FONT}}}
main{{max-width:1280px;margin:0 auto;padding:28px 24px 40px}}
h1{{font-size:24px;font-weight:650;margin:0 0 4px;letter-spacing:-.01em}}
.meta{{color:var(--muted);margin:0}}
.tiles{{display:grid;grid-template-columns:repeat(auto-fit,minmax(160px,1fr));gap:12px;margin:20px 0}}
.tile,.card{{background:var(--card);border:1px solid var(--line);border-radius:10px}}
.tile{{padding:12px 16px}}
.tile-label{{color:var(--muted);font-size:12px;text-transform:uppercase;letter-spacing:.05em}}
.tile-value{{font-size:26px;font-weight:600;font-variant-numeric:tabular-nums;margin-top:2px}}
.tile.bad .tile-value{{color:#cf222e}}
.card{{padding:16px 20px;margin-bottom:16px;min-width:0}}
.card h2{{font-size:16px;font-weight:600;margin:0}}
.sub{{color:var(--muted);font-size:12.5px;margin:2px 0 12px}}
.grid2{{display:grid;grid-template-columns:repeat(auto-fit,minmax(440px,1fr));gap:16px;margin-bottom:16px}}
.grid2 .card{{margin:0}}
.split,.tags{{display:grid;grid-template-columns:repeat(auto-fit,minmax(300px,1fr));gap:12px 28px}}
.tags{{grid-template-columns:repeat(auto-fit,minmax(380px,1fr))}}
figure{{margin:0;min-width:0}}
figcaption{{font-size:13px;font-weight:600;margin:4px 0 6px}}
svg{{display:block;width:100%;height:auto;overflow:visible}}
svg text{{font:11px {_FONT};fill:var(--muted)}}
svg text.label{{fill:var(--fg)}}
svg text.value{{font-size:10.5px}}
.gridline{{stroke:var(--grid)}}
.axis{{stroke:#afb8c1}}
.mark:hover{{opacity:.75}}
.legend{{list-style:none;display:flex;flex-wrap:wrap;gap:4px 18px;padding:0;margin:0 0 10px;font-size:12.5px;color:var(--muted)}}
.swatch{{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:7px;vertical-align:-1px}}
table{{width:100%;border-collapse:collapse;font-variant-numeric:tabular-nums;margin-top:10px}}
th,td{{padding:8px 12px;border-bottom:1px solid var(--grid);text-align:right;white-space:nowrap}}
th:first-child,td:first-child{{text-align:left;white-space:normal;word-break:break-all}}
th{{font-size:12px;color:var(--muted);font-weight:600;border-bottom-color:var(--line)}}
tbody tr:hover{{background:var(--bg)}}
.empty{{color:var(--muted);padding:24px 0;text-align:center;margin:0}}
.empty-page{{text-align:center;padding:56px 20px}}
footer{{color:var(--muted);font-size:12px;text-align:center;margin-top:24px}}
"""
