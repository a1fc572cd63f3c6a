"""One self-contained HTML page: the headline numbers, every chart as an embedded PNG with its numbers beneath.

No scripts, fonts or stylesheets from the network: it opens the same from a laptop, a CI artifact or an e-mail.
"""

from __future__ import annotations

import base64
from html import escape
from typing import Any

from localdev.report.analysis import Analytics, ChartData

_STYLE = """
body { font-family: system-ui, -apple-system, Segoe UI, Roboto, sans-serif; margin: 2rem auto; max-width: 1100px;
       color: #222; padding: 0 1rem; }
h1 { margin-bottom: 0.2rem; } .sub { color: #666; margin-top: 0; }
table { border-collapse: collapse; font-size: 0.85rem; margin: 0.5rem 0 1rem; }
th, td { border-bottom: 1px solid #ddd; padding: 0.2rem 0.6rem; text-align: right; }
th:first-child, td:first-child { text-align: left; }
section { margin: 2rem 0; } img { max-width: 100%; border: 1px solid #eee; }
.note { background: #fff8e1; border-left: 4px solid #f0ad4e; padding: 0.4rem 0.8rem; }
.caption { color: #444; } details summary { cursor: pointer; color: #1f77b4; }
"""


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, int):
        return f"{value:,}".replace(",", "\u2009")
    return escape(str(value))


def table_html(columns: list[str], rows: list[tuple[Any, ...]], table_id: str = "") -> str:
    head = "".join(f"<th>{escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in row) + "</tr>" for row in rows)
    ident = f' id="{escape(table_id)}"' if table_id else ""
    return f"<table{ident}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _section(chart: ChartData, png: bytes) -> str:
    data = base64.b64encode(png).decode("ascii")
    return (
        f'<section id="{escape(chart.name)}"><h2>{escape(chart.title)}</h2>'
        f'<p class="caption">{escape(chart.caption)}</p>'
        f'<img alt="{escape(chart.title)}" src="data:image/png;base64,{data}">'
        f"<details><summary>the numbers ({len(chart.rows)} rows)</summary>"
        f"{table_html(chart.columns, chart.rows, f'data-{chart.name}')}</details></section>"
    )


def render_html(analytics: Analytics, pngs: dict[str, bytes], title: str, subtitle: str) -> str:
    sections = "".join(_section(chart, pngs[chart.name]) for chart in analytics.charts)
    notes = "".join(f'<p class="note">{escape(n)}</p>' for n in analytics.notes)
    headline = table_html(["", "value"], analytics.headline, "headline")
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>"
        f'<h1>{escape(title)}</h1><p class="sub">{escape(subtitle)}</p>'
        f"{headline}{notes}{sections}</body></html>\n"
    )
