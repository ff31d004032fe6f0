"""The report as one HTML file: tables, and plots drawn by matplotlib as inline SVG.

Self-contained: no script, no stylesheet, font or image from elsewhere; the
SVG draws its text as paths, so the file looks the same on any machine,
offline. Every text that comes from the log is escaped. The headline's exact
counts are also embedded as JSON (`<script type="application/json"
id="headline">`), for a program that checks them.
"""

from __future__ import annotations

import html
import io
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

import matplotlib
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from infra.monitoring.report.crunch import AUDIT_EVENTS, NOTE_EVENTS, Headline, Read

matplotlib.rcParams.update(
    {
        "svg.fonttype": "path",  # text as outlines: no font needed where the file is opened
        "svg.hashsalt": "hosp-report",  # the same input draws the same SVG
        "font.size": 9,
        "axes.grid": True,
        "grid.alpha": 0.3,
    }
)
# Colours: HOSP's own behaviour in orange, what users saw in blue, the proxy's work in grey and red.
HOSP, USERS, RETRIES, REFUSED, OTHER = "#e07b00", "#1f5fbf", "#7f7f7f", "#c0392b", "#2e8b57"


@dataclass(frozen=True)
class Report:
    """Everything the HTML shows."""

    sources: str
    read: Read
    lambda_unreadable: int
    start: datetime | None
    end: datetime | None
    bucket: timedelta
    whole: Headline
    days: list[Headline]
    series: list[dict[str, Any]]
    offenders: list[tuple[str, int, int]]
    first_failures: list[tuple[str, int]]
    lambda_events: Counter[tuple[datetime, str]] | None


def _svg(figure: Figure) -> str:
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    text = buffer.getvalue()
    return text[text.index("<svg") :]


def _figure(title: str, ylabel: str, *, counts: bool = False) -> tuple[Figure, Any]:
    figure = Figure(figsize=(10, 3.2))
    axes = figure.subplots()
    axes.set_title(title, loc="left", fontsize=10, fontweight="bold")
    axes.set_ylabel(ylabel)
    locator = AutoDateLocator()
    axes.xaxis.set_major_locator(locator)
    axes.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    if counts:
        axes.yaxis.set_major_locator(MaxNLocator(integer=True))
    return figure, axes


def _legend(axes: Any) -> None:
    """The legend right of the plot, where it hides no line."""
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)


def _percent(part: int, whole: int) -> float | None:
    return 100.0 * part / whole if whole else None


def _rates_plot(series: list[dict[str, Any]]) -> str:
    figure, axes = _figure("HOSP's first attempts failed vs what clients saw fail", "% of requests")
    times = [row["bucket"] for row in series]
    hosp = [_percent(row["headline"].first_attempt_failures, row["headline"].hosp_requests) for row in series]
    users = [_percent(row["headline"].client_failures, row["headline"].client_requests) for row in series]
    axes.plot(
        times, [v if v is not None else float("nan") for v in hosp], color=HOSP, label="HOSP: first attempts failed"
    )
    axes.plot(times, [v if v is not None else float("nan") for v in users], color=USERS, label="clients: answered 5xx")
    axes.set_ylim(bottom=0)
    _legend(axes)
    return _svg(figure)


def _traffic_plot(series: list[dict[str, Any]]) -> str:
    figure, axes = _figure("Requests and retries", "per bucket", counts=True)
    times = [row["bucket"] for row in series]
    axes.plot(times, [row["headline"].client_requests for row in series], color=USERS, label="client requests")
    axes.plot(times, [row["headline"].attempts for row in series], color=HOSP, label="attempts to HOSP")
    axes.plot(times, [row["headline"].retried for row in series], color=RETRIES, label="retried")
    axes.plot(times, [row["headline"].refusals for row in series], color=REFUSED, label="retries refused by the budget")
    axes.set_ylim(bottom=0)
    _legend(axes)
    return _svg(figure)


def _latency_plot(series: list[dict[str, Any]]) -> str:
    figure, axes = _figure("Time to answer clients (request_time)", "milliseconds")
    times = [row["bucket"] for row in series]
    for key, colour in (("p50", USERS), ("p95", HOSP), ("p99", REFUSED)):
        values = [row[key] * 1000 if row[key] is not None else float("nan") for row in series]
        axes.plot(times, values, color=colour, label=key)
    axes.set_ylim(bottom=0)
    _legend(axes)
    return _svg(figure)


def _label(text: str, limit: int = 60) -> str:
    """Log text as a plain label: cut short, and a `$` never read as matplotlib's math markup."""
    text = text if len(text) <= limit else text[: limit - 1] + "\u2026"
    return text.replace("$", r"\$")


def _bars(title: str, labels: Sequence[str], values: Sequence[int], colour: str) -> str:
    labels = [_label(label) for label in labels]
    figure = Figure(figsize=(9, 0.6 + 0.32 * max(len(labels), 1)))
    axes = figure.subplots()
    axes.set_title(title, loc="left", fontsize=10, fontweight="bold")
    axes.barh(list(reversed(labels)), list(reversed(values)), color=colour)
    for y, value in enumerate(reversed(values)):
        axes.annotate(f"{value:,}", (value, y), xytext=(3, 0), textcoords="offset points", va="center")
    axes.set_xlabel("requests")
    axes.grid(axis="y", visible=False)
    return _svg(figure)


def _events_plot(
    title: str, series: list[dict[str, Any]], proxy: tuple[str, str], names: dict[str, str], *,
    events: Counter[tuple[datetime, str]] | None, bucket: timedelta,
) -> str:  # fmt: skip
    """The proxy's count per bucket (proxy: its key in series, its label), and the Lambdas' events of `names`."""
    proxy_key, proxy_label = proxy
    figure, axes = _figure(title, "per bucket", counts=True)
    times = [row["bucket"] for row in series]
    axes.plot(times, [row[proxy_key] for row in series], color=USERS, label=proxy_label)
    if events is not None and times:
        first = times[0]
        colours = iter((OTHER, HOSP, RETRIES, REFUSED, "#8e44ad", "#16a085"))
        for event, label in names.items():
            per_bucket: Counter[datetime] = Counter()
            for (when, name), count in events.items():
                if name == event:
                    per_bucket[first + bucket * ((when - first) // bucket)] += count
            if per_bucket:  # an event that never happened is left out of the legend
                axes.plot(times, [per_bucket[t] for t in times], color=next(colours), label=label)
    axes.set_ylim(bottom=0)
    _legend(axes)
    return _svg(figure)


def _rate(part: int, whole: int) -> str:
    return f"{100.0 * part / whole:.2f}% <small>({part:,} of {whole:,})</small>" if whole else "&ndash;"


def _headline_row(headline: Headline) -> str:
    load = f"{headline.upstream_load:.3f}" if headline.upstream_load is not None else "&ndash;"
    cells = [
        html.escape(headline.label),
        f"{headline.client_requests:,}",
        _rate(headline.first_attempt_failures, headline.hosp_requests),
        _rate(headline.client_failures, headline.client_requests),
        f"{headline.recovered:,}",
        load,
        f"{headline.retried:,}",
        f"{headline.refusals:,}",
    ]
    return "<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>"


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC") if moment else "&ndash;"


_STYLE = """
body { font-family: sans-serif; margin: 2em auto; max-width: 70em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.15em; margin-top: 1.8em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.5em 0; } td, th { padding: 0.25em 0.7em; border: 1px solid #ddd; }
th { background: #f3f3f3; text-align: left; } td { text-align: right; } td:first-child { text-align: left; }
.figure { margin: 0.8em 0; } .figure svg { max-width: 100%; height: auto; }
.note { color: #555; font-size: 0.9em; } .empty { color: #777; font-style: italic; }
"""


def page(report: Report) -> str:
    """The whole HTML document."""
    series, read = report.series, report.read
    headers = (
        "span", "client requests", "HOSP first attempts failed", "clients saw a failure",
        "recovered by retries", "attempts to HOSP per request", "retried", "retries refused",
    )  # fmt: skip
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8"><title>HOSP reliability report</title>',
        f"<style>{_STYLE}</style></head><body>",
        "<h1>HOSP reliability report</h1>",
        f'<p class="note">Read {html.escape(report.sources)}: {read.lines:,} lines, '
        f"{read.unreadable:,} unreadable and skipped, {read.outside:,} outside the span asked for"
        + (f"; {report.lambda_unreadable:,} unreadable lines in the Lambda logs" if report.lambda_unreadable else "")
        + f". Lines logged from {_when(read.first)} to {_when(read.last)}"
        + (f" (asked: from {_when(report.start)} to {_when(report.end)})" if report.start or report.end else "")
        + f". Plots in buckets of {duration(report.bucket)}.</p>",
        "<h2>Headline</h2>",
        "<table><tr>" + "".join(f"<th>{h}</th>" for h in headers) + "</tr>",
        _headline_row(report.whole),
        *(_headline_row(day) for day in report.days),
        "</table>",
        "<p class=\"note\">Client requests: the public listener's (through CloudFront). HOSP's first attempts: "
        "requests routed to HOSP from either listener; a 502 or 504 is NGINX's word for a reset connection or a "
        "timeout. Recovered: HOSP failed the first attempt, the client got no 5xx. docs/report.md defines each.</p>",
    ]
    if not series:
        parts.append('<p class="empty">No readable line in the span: nothing to plot.</p>')
    else:
        parts += ["<h2>Over time</h2>"]
        parts += [
            f'<div class="figure">{svg}</div>'
            for svg in (_rates_plot(series), _traffic_plot(series), _latency_plot(series))
        ]
        parts.append("<h2>Where clients saw failures</h2>")
        if report.offenders:
            labels = [f"{route} {status}" for route, status, _ in report.offenders]
            svg = _bars(
                "Client failures by route and status (top offenders)", labels, [n for *_, n in report.offenders], USERS
            )
            parts.append(f'<div class="figure">{svg}</div>')
        else:
            parts.append('<p class="empty">No client saw a 5xx in this span.</p>')
        if report.first_failures:
            labels = [f"first attempt {status}" for status, _ in report.first_failures]
            svg = _bars("HOSP's failed first attempts by status", labels, [n for _, n in report.first_failures], HOSP)
            parts.append(f'<div class="figure">{svg}</div>')
        parts.append("<h2>Screens and their notes</h2>")
        if report.lambda_events is None:
            parts.append('<p class="note">No Lambda log given (--lambda-log): only the screens the proxy saw.</p>')
        svg = _events_plot(
            "X-ray screens and their notes", series, ("screens", "screens (proxy)"), NOTE_EVENTS,
            events=report.lambda_events, bucket=report.bucket,
        )  # fmt: skip
        parts.append(f'<div class="figure">{svg}</div>')
        parts.append("<h2>Audit exports</h2>")
        svg = _events_plot(
            "Audit trail requests and exports", series, ("audit", "/audit requests (proxy)"), AUDIT_EVENTS,
            events=report.lambda_events, bucket=report.bucket,
        )  # fmt: skip
        parts.append(f'<div class="figure">{svg}</div>')
    exact = {
        "whole": asdict(report.whole),
        "days": [asdict(day) for day in report.days],
        "read": _jsonable(asdict(read)),
    }
    parts.append('<script type="application/json" id="headline">' + _json_in_html(exact) + "</script>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def duration(size: timedelta) -> str:
    """A bucket's size in words: 15 minutes, 1 day."""
    seconds = int(size.total_seconds())
    for unit, name in ((86400, "day"), (3600, "hour"), (60, "minute"), (1, "second")):
        if seconds % unit == 0:
            count = seconds // unit
            return f"{count} {name}{'s' if count != 1 else ''}"
    return f"{seconds} seconds"


def _jsonable(values: dict[str, Any]) -> dict[str, Any]:
    return {key: value.isoformat() if isinstance(value, datetime) else value for key, value in values.items()}


def _json_in_html(value: object) -> str:
    """JSON that cannot end the script element it sits in."""
    return json.dumps(value).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
