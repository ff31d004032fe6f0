"""The report benchmark's check of the headline: a count that differs is named, per span and per day."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

from bench.access_logs import Rates, generate
from bench.report_bench import HEADLINE, headline_checks


def _page(path: Path, whole: dict[str, int], days: list[dict[str, object]], unreadable: int) -> Path:
    embedded = json.dumps({"whole": whole, "days": days, "read": {"unreadable": unreadable}})
    path.write_text(f'<html><script type="application/json" id="headline">{embedded}</script></html>')
    return path


def test_equal_counts_pass_and_a_differing_one_is_named(tmp_path: Path) -> None:
    with (tmp_path / "access.json").open("w") as out:
        truth = generate(out, 3000, datetime(2026, 11, 30, 12), timedelta(days=1), Rates(broken=0.01), seed=3)
    whole = {name: truth.counts()[name] for name in HEADLINE}
    days = [{"label": label, **{name: day.counts()[name] for name in HEADLINE}} for label, day in truth.per_day.items()]

    right = headline_checks(_page(tmp_path / "right.html", whole, days, truth.unreadable), truth)
    days[1]["retried"] = int(str(days[1]["retried"])) + 1
    wrong = headline_checks(_page(tmp_path / "wrong.html", whole, days, truth.unreadable - 1), truth)

    assert all(check.passed for check in right)
    assert len(right) == len(HEADLINE) + 1 + 2  # the whole span's counts, unreadable lines, two days
    assert [(c.target, c.case, c.seen) for c in wrong if not c.passed] == [
        ("whole span", "unreadable lines", str(truth.unreadable - 1)),
        ("2026-12-01", "every headline count", "differs: retried"),
    ]
