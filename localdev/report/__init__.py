"""The analytics report: what the pipeline produced, as charts, from what is in the lake bucket.

Like the seed prototype's notebooks: sessions per minute (stream vs batch), session durations and events per
session, top events, countries and devices, the stream's per-minute metrics, and the reconciliation per hour.
Written as PNGs plus one self-contained HTML page (the PNGs embedded) under ``.local/demo/report/``.

    python -m localdev.report --port 4566             # against a running local endpoint
    build_report(s3, bucket, settings(), hours, out)  # from code (``make demo`` calls this)

Modules: ``lake`` (read the S3 layouts), ``analysis`` (the numbers of each chart), ``charts`` (PNGs),
``html`` (the page).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from include.config import Settings
from localdev.report.analysis import Analytics, ChartData, analyse
from localdev.report.lake import LakeData, LakeReadError, discover_hours, read_lake

DEFAULT_OUTPUT = Path(__file__).resolve().parents[2] / ".local" / "demo" / "report"
HTML_NAME = "report.html"


class EmptyLakeError(LakeReadError):
    """Nothing to draw: no compacted events, streamed sessions or metrics for the hours asked."""


@dataclass
class ReportFiles:
    html: Path
    pngs: dict[str, Path]
    analytics: Analytics
    lake: LakeData


def _clear_previous(directory: Path) -> None:
    """Remove the PNGs of an earlier report, so the folder holds exactly this report's charts."""
    for old in directory.glob("*.png"):
        old.unlink()


def build_report(
    s3: Any,
    bucket: str,
    settings: Settings,
    hours: list[datetime] | None = None,
    output_dir: str | Path = DEFAULT_OUTPUT,
) -> ReportFiles:
    """Read ``hours`` (default: the hours with data, up to a day back from the latest) and write the report."""
    from localdev.report.charts import render_png
    from localdev.report.html import render_html

    if hours is None:
        hours = discover_hours(s3, bucket, settings)
    where = (
        f"s3://{bucket}/{settings.manifest_prefix} (compacted hours) or "
        f"s3://{bucket}/{settings.streaming_prefix}sessions/ (streamed sessions)"
    )
    if not hours:
        raise EmptyLakeError(
            f"nothing to report: no compacted hour or streamed session in {where}. Run `make demo` first, or "
            "start the pipeline with `make up` and wait for an hour to be compacted."
        )
    lake = read_lake(s3, bucket, settings, hours)
    if lake.is_empty():
        span = f"{hours[0]:%Y-%m-%dT%H} … {hours[-1]:%Y-%m-%dT%H}"
        raise EmptyLakeError(
            f"nothing to report for hours {span}: no compacted events, streamed sessions or metrics in {where}"
        )
    analytics = analyse(lake)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    _clear_previous(out)
    pngs: dict[str, bytes] = {chart.name: render_png(chart) for chart in analytics.charts}
    paths = {}
    for name, data in pngs.items():
        paths[name] = out / f"{name}.png"
        paths[name].write_bytes(data)
    last = hours[-1] + timedelta(hours=1)
    subtitle = (
        f"s3://{bucket}, hours {hours[0]:%Y-%m-%d %H}:00 – {last:%Y-%m-%d %H}:00 UTC; "
        f"generated {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC"
    )
    html = out / HTML_NAME
    html.write_text(render_html(analytics, pngs, "Clickstream sessions: analytics report", subtitle), "utf-8")
    return ReportFiles(html=html, pngs=paths, analytics=analytics, lake=lake)


__all__ = [
    "DEFAULT_OUTPUT",
    "Analytics",
    "ChartData",
    "EmptyLakeError",
    "LakeReadError",
    "ReportFiles",
    "build_report",
]
