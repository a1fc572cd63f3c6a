"""Draw each :class:`ChartData` as a PNG with matplotlib (Agg backend: no display, no network)."""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import datetime, timedelta

import matplotlib

matplotlib.use("Agg")

import matplotlib.dates as mdates  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from localdev.report.analysis import CAUSE_COLUMNS, ChartData  # noqa: E402

STREAM_COLOR = "#1f77b4"
BATCH_COLOR = "#ff7f0e"
CAUSE_COLORS = {
    "late": "#9467bd",
    "duplicate": "#8c564b",
    "rule_difference": "#17becf",
    "missing_in_stream": "#d62728",
    "missing_in_batch": "#e377c2",
    "mismatch": "#bcbd22",
    "deferred": "#c7c7c7",
}
DPI = 110


def _figure(width: float = 9.5, height: float = 4.2) -> tuple[Figure, plt.Axes]:
    fig, ax = plt.subplots(figsize=(width, height), dpi=DPI)
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(axis="y", alpha=0.3)
    return fig, ax


def _minutes(labels: list[str]) -> list[datetime]:
    return [datetime.strptime(m, "%Y-%m-%dT%H:%M") for m in labels]


def _time_axis(ax: plt.Axes) -> None:
    locator = mdates.AutoDateLocator(minticks=4, maxticks=12)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    ax.set_xlabel("minute (UTC)")


def _sessions_per_minute(chart: ChartData) -> Figure:
    fig, ax = _figure()
    x = _minutes(chart.column("minute"))
    marker = "o" if len(x) <= 120 else None
    ax.plot(x, chart.column("stream"), color=STREAM_COLOR, lw=2, marker=marker, label="stream (Flink)")
    ax.plot(x, chart.column("batch"), color=BATCH_COLOR, lw=2, ls="--", marker=marker, label="batch")
    ax.set_ylabel("sessions started")
    ax.set_ylim(bottom=0)
    _time_axis(ax)
    ax.legend(frameon=False)
    return fig


def _grouped_bars(chart: ChartData, xlabel: str) -> Figure:
    fig, ax = _figure()
    labels = chart.column(chart.columns[0])
    positions = range(len(labels))
    width = 0.4
    stream, batch = chart.column("stream"), chart.column("batch")
    ax.bar([p - width / 2 for p in positions], stream, width, color=STREAM_COLOR, label="stream (Flink)")
    ax.bar([p + width / 2 for p in positions], batch, width, color=BATCH_COLOR, label="batch")
    ax.set_xticks(list(positions), labels)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("sessions")
    ax.legend(frameon=False)
    return fig


def _horizontal(chart: ChartData) -> Figure:
    labels = [str(v) for v in chart.column(chart.columns[0])][::-1]
    fig, ax = _figure(height=max(2.5, 0.36 * len(labels) + 1.2))
    ax.grid(axis="y", alpha=0)
    ax.grid(axis="x", alpha=0.3)
    values = chart.column(chart.columns[1])[::-1]
    bars = ax.barh(labels, values, color=STREAM_COLOR)
    ax.bar_label(bars, labels=[f"{v:,}" for v in values], padding=3, fontsize=8)
    ax.set_xlabel(chart.columns[1])
    if len(chart.columns) > 2:  # e.g. stream sessions beside events: a second, thinner bar
        extra = chart.column(chart.columns[2])[::-1]
        ax.barh(labels, extra, height=0.35, color=BATCH_COLOR, label=chart.columns[2])
        ax.barh([], [], color=STREAM_COLOR, label=chart.columns[1])
        ax.legend(frameon=False, loc="lower right")
        ax.set_xlabel("count")
    return fig


def _metrics_per_minute(chart: ChartData) -> Figure:
    fig, ax = _figure()
    x = _minutes(chart.column("minute"))
    devices = chart.columns[1:-2]
    bottom = [0] * len(x)
    width = 0.7 / (24 * 60)  # bars of 0.7 minute on a date axis (unit: days)
    palette = plt.get_cmap("Set2")
    for i, device in enumerate(devices):
        values = chart.column(device)
        ax.bar(x, values, width, bottom=bottom, align="edge", color=palette(i % 8), label=f"stream: {device}")
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    batch = chart.column("batch events")
    ax.step(  # one flat segment per minute: repeat the last value to the end of the last minute
        x + [x[-1] + timedelta(minutes=1)],
        batch + batch[-1:],
        where="post",
        color="black",
        lw=1.5,
        zorder=3,
        label="batch: compacted events",
    )
    ax.set_ylabel("events per minute")
    _time_axis(ax)
    ax.legend(frameon=False, fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return fig


def _reconciliation(chart: ChartData) -> Figure:
    fig, (rate_ax, cause_ax) = plt.subplots(
        1, 2, figsize=(10, max(2.5, 0.45 * len(chart.rows) + 1.5)), dpi=DPI, width_ratios=[1, 2]
    )
    hours = chart.column("hour")[::-1]
    status = chart.column("status")[::-1]
    rates = [100 * r for r in chart.column("match_rate")[::-1]]
    palette = {"passed": "#2ca02c", "failed": "#d62728", "repaired": "#ff7f0e"}  # batch_only: grey
    colors = [palette.get(s, "#7f7f7f") for s in status]
    bars = rate_ax.barh(hours, rates, color=colors)
    rate_ax.bar_label(
        bars, labels=[f"{r:.2f} % {s}" for r, s in zip(rates, status, strict=True)], padding=4, fontsize=8
    )
    rate_ax.set_xlim(0, 150)
    rate_ax.set_xticks([0, 25, 50, 75, 100])
    rate_ax.set_xlabel("matched sessions (% of batch sessions)")
    left = [0] * len(hours)
    for cause in CAUSE_COLUMNS[1:]:
        values = chart.column(cause)[::-1]
        if any(values):
            cause_ax.barh(hours, values, left=left, color=CAUSE_COLORS[cause], label=cause)
            left = [a + b for a, b in zip(left, values, strict=True)]
    if not any(left):
        cause_ax.text(0.5, 0.5, "every compared session matched", ha="center", va="center")
    else:
        cause_ax.legend(frameon=False, fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    cause_ax.set_xlabel("sessions not matched, by cause")
    cause_ax.set_yticks(range(len(hours)), [""] * len(hours))
    for ax in (rate_ax, cause_ax):
        ax.spines[["top", "right"]].set_visible(False)
    return fig


DRAWERS: dict[str, Callable[[ChartData], Figure]] = {
    "sessions_per_minute": _sessions_per_minute,
    "session_duration": lambda c: _grouped_bars(c, "session duration"),
    "events_per_session": lambda c: _grouped_bars(c, "events in the session"),
    "top_events": _horizontal,
    "countries": _horizontal,
    "devices": _horizontal,
    "metrics_per_minute": _metrics_per_minute,
    "reconciliation": _reconciliation,
}


def render_png(chart: ChartData) -> bytes:
    """The chart as PNG bytes (title on top, tight layout)."""
    try:
        drawer = DRAWERS[chart.name]
    except KeyError:
        raise KeyError(f"no drawing for chart {chart.name!r}; known: {sorted(DRAWERS)}") from None
    fig = drawer(chart)
    try:
        fig.suptitle(chart.title, x=0.01, ha="left", fontsize=12, fontweight="bold")
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", bbox_inches="tight", pad_inches=0.15, metadata={"Software": None})
        return buffer.getvalue()
    finally:
        plt.close(fig)
