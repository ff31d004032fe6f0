"""The retry budget under load: the ratio budget against the fixed one it replaced, and HAProxy.

    python -m bench.budget_bench            # or: make bench-budget
    python -m bench.budget_bench --help

Three tables, each from the real NGINX (rendered config) and the HOSP stand-in on
127.0.0.1, bounded in count and time:
  1. outage: HOSP fully down, GETs offered at a steady rate; HOSP's load per client
     request after the budget's first window, against the bound 1 + ratio + floor / rate;
  2. scaling: 20% of first attempts fail, at 30 and 300 GETs/s; client failures against
     the realized floor (requests whose 3 attempts all failed) and the budget's refusals;
  3. fairness: a flood of GETs on a path HOSP always fails (wrk, 30 connections), by one
     user, under thousands of made-up names, or under the second user's name with another
     password, while a second user (both users signed in before)
     sends 100 sequential GETs at a 30% fault rate; the second user's failures against
     its own realized floor, round by round.
"nginx, fixed budget" is the same config with the budget it had before the ratio budget:
limit_req, 20 retried requests/s and a burst of 40 for the whole instance.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import requests

from bench.floor import fault_config
from bench.report import Table, ratio
from bench.servers import HAProxy, require_binary
from bench.toolkit import run_directory
from infra.nginx.render import Tuning
from local.hosp_standin.process import StandInProcess as StandIn
from local.hosp_standin.store import DEMO_ACCOUNTS
from local.nginx_proxy import NginxProxy

TRIES = 3
TUNING = Tuning(tries=TRIES, try_timeout=2.0, connect_timeout=2.0)
SECTIONS = ("outage", "scaling", "fairness")
FIXED_RATE, FIXED_BURST = 20, 40
PATH = "/patients/1"
FLOOD_PATH = "/hospitals"  # the path HOSP always fails in the fairness table
REQUEST_TIMEOUT = 10.0


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


QUIET = basic(DEMO_ACCOUNTS[1].username, DEMO_ACCOUNTS[1].password)
FLOODER = basic(DEMO_ACCOUNTS[2].username, DEMO_ACCOUNTS[2].password)
# The fairness table's floods: the Authorization headers wrk takes in turn.
MADE_UP_NAMES = 5000
FLOODS: dict[str, list[str]] = {
    "one user": [FLOODER["Authorization"]],
    f"{MADE_UP_NAMES} made-up names": [basic(f"made-up-{n}", "guess")["Authorization"] for n in range(MADE_UP_NAMES)],
    "the second user's name, another password": [basic(DEMO_ACCOUNTS[1].username, "guess")["Authorization"]],
}


def flood_script(authorizations: list[str]) -> str:
    """A wrk script whose requests take the Authorization headers in turn."""
    listed = ",\n".join(f'  "{value}"' for value in authorizations)
    return (
        f"local headers = {{\n{listed}\n}}\n"
        "local i = 0\n"
        "request = function()\n"
        '  i = i + 1\n  wrk.headers["Authorization"] = headers[i % #headers + 1]\n  return wrk.format()\n'
        "end\n"
    )


@dataclass
class FixedBudgetProxy(NginxProxy):
    """The rendered config with the fixed budget it had before: limit_req, one key for all."""

    def render(self) -> None:
        super().render()
        text = self.config_path.read_text()
        admit = 'access_by_lua_block {\n                require("hosp_retry_budget").admit()\n            }'
        if admit not in text:
            raise SystemExit("budget_bench: the rendered @hosp_retry no longer looks as expected")
        limit = f"limit_req zone=fixed_budget burst={FIXED_BURST} nodelay;\n            limit_req_status 429;"
        zone = (
            f"    limit_req_zone $hosp_fixed_key zone=fixed_budget:1m rate={FIXED_RATE}r/s;\n"
            "    map $request_method $hosp_fixed_key { default all; }\n"
        )
        text = text.replace(admit, limit).replace("http {\n", "http {\n" + zone, 1)
        self.config_path.write_text(text)


# (target, measured, met): the targets, for bench.proxy_bench's table of targets too.
Targets = list[tuple[str, str, bool]]


@dataclass(frozen=True)
class Answer:
    user: str
    status: int | None  # None: the connection failed
    refused: bool  # the budget's 503 (Retry-After: 1), not HOSP's answer
    sent_at: float


def paced(url: str, rate: float, seconds: float, users: dict[str, dict[str, str]], threads: int = 8) -> list[Answer]:
    """GETs at `rate` per second for `seconds`, the users taking turns, from `threads` keep-alive sessions.

    Open loop: request i is due at i / rate; a thread that falls behind sends at once."""
    total = round(rate * seconds)
    names = list(users)
    started = time.monotonic()
    local = threading.local()
    sessions: list[requests.Session] = []

    def one(i: int) -> Answer:
        delay = started + i / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
            sessions.append(session)  # list.append is atomic: no lock needed
        name = names[i % len(names)]
        sent_at = time.monotonic() - started
        try:
            answer = session.get(url + PATH, headers=users[name], timeout=REQUEST_TIMEOUT)
        except requests.RequestException:
            return Answer(name, None, False, sent_at)
        return Answer(name, answer.status_code, answer.headers.get("Retry-After") == "1", sent_at)

    try:
        with ThreadPoolExecutor(threads) as pool:
            return list(pool.map(one, range(total)))
    finally:
        for session in sessions:
            session.close()


def log_lines(proxy: NginxProxy) -> list[dict[str, object]]:
    return [json.loads(line) for line in proxy.access_log.read_text().splitlines()]


def floor_failures(lines: list[dict[str, object]], user: str) -> int:
    """The user's requests whose every one of the 3 attempts failed: what a perfect 3-try proxy fails too."""
    count = 0
    for line in lines:
        statuses = str(line.get("upstream_status", "")).replace(" : ", ", ").split(", ")
        if line.get("user") == user and len(statuses) == TRIES and all(not s.startswith("2") for s in statuses):
            count += 1
    return count


@contextlib.contextmanager
def proxies(standin: StandIn, run_dir: Path, tuning: Tuning = TUNING) -> Iterator[dict[str, NginxProxy]]:
    with (
        NginxProxy(standin.address, run_dir / "nginx-ratio", tuning=tuning) as ratio_proxy,
        FixedBudgetProxy(standin.address, run_dir / "nginx-fixed", tuning=tuning) as fixed_proxy,
    ):
        yield {"nginx, ratio budget": ratio_proxy, "nginx, fixed budget": fixed_proxy}


def outage_table(standin: StandIn, run_dir: Path, args: argparse.Namespace, targets: Targets) -> Table:
    window = TUNING.retry_budget_window
    table = Table(
        f"1. Full outage: GETs at {args.outage_rate:g}/s for {args.outage_seconds:g} s, "
        f"HOSP's load per client request after the first {window:g} s",
        [
            "proxy",
            "client GETs",
            "upstream",
            "upstream/GET, whole run",
            "upstream/GET after the window",
            "bound",
            "within",
        ],
    )
    users = {"quiet": QUIET, "flooder": FLOODER}
    with proxies(standin, run_dir) as proxied, HAProxy(standin.address, run_dir / "haproxy") as haproxy:
        named: dict[str, str] = {name: proxy.url for name, proxy in proxied.items()} | {"haproxy": haproxy.url}
        for name, url in named.items():
            standin.reset({"outage": True})
            at_window: list[int] = []
            marker = threading.Timer(window, _count_into, (standin, at_window))
            marker.start()
            answers = paced(url, args.outage_rate, args.outage_seconds, users)
            marker.join()
            upstream = int(standin.stats()["total"])
            # The requests due after the window: the client is open loop, request i due at i / rate.
            sent_after = sum(a.sent_at >= window for a in answers)
            after = (upstream - at_window[0]) / max(1, sent_after)
            if name == "haproxy":
                bound: float | None = float(TRIES)
                bound_text = f"{TRIES:.3f} (no budget)"
            elif "fixed" in name:
                # Context only: the fixed budget's bound counts retried requests, whose attempts vary.
                bound, bound_text = (
                    None,
                    f"~{1 + (TRIES - 1) * FIXED_RATE / args.outage_rate:.3f} (1 + 2 x 20/s / rate)",
                )
            else:
                bound = 1 + TUNING.retry_budget_ratio + TUNING.retry_budget_floor / args.outage_rate
                bound_text = f"{bound:.3f} (1 + ratio + floor / rate)"
            within = "-" if bound is None else "yes" if after <= bound * 1.02 else "NO"
            if "ratio" in name and bound is not None:
                targets.append(
                    (f"outage: HOSP's load per GET after the window <= 1 + ratio + floor/rate ({bound:.3f})",
                     f"{after:.3f}", after <= bound * 1.02)
                )  # fmt: skip
            table.add(
                name, len(answers), upstream, f"{upstream / len(answers):.3f}", f"{after:.3f}", bound_text, within
            )
    return table


def _count_into(standin: StandIn, counts: list[int]) -> None:
    counts.append(int(standin.stats()["total"]))


def scaling_table(standin: StandIn, run_dir: Path, args: argparse.Namespace, targets: Targets) -> Table:
    table = Table(
        f"2. Traffic scaling: 20% of attempts fail, {args.scaling_seconds:g} s per rate",
        [
            "rate/s",
            "proxy",
            "client GETs",
            "failures",
            "realized floor",
            "failures/floor",
            "budget refusals",
            "upstream/GET",
        ],
    )
    user = DEMO_ACCOUNTS[1].username
    with proxies(standin, run_dir) as proxied:
        for rate in (30.0, 300.0):
            for name, proxy in proxied.items():
                standin.reset(fault_config(0.2, args.seed))
                start = len(log_lines(proxy))
                answers = paced(proxy.url, rate, args.scaling_seconds, {"quiet": QUIET})
                time.sleep(1.5)  # the access log is written in buffers, at least every second
                lines = log_lines(proxy)[start:]
                failures = sum(a.status is None or a.status >= 400 for a in answers)
                floor = floor_failures(lines, user)
                refusals = sum(a.refused for a in answers)
                if "ratio" in name:
                    targets.append(
                        (f"scaling: {rate:g} GETs/s at 20% faults, failures = realized floor, no refusal",
                         f"{failures} vs {floor}, {refusals} refused", failures == floor and refusals == 0)
                    )  # fmt: skip
                table.add(f"{rate:g}", name, len(answers), failures, floor, _ratio(failures, floor), refusals,
                          f"{standin.stats()['total'] / len(answers):.3f}")  # fmt: skip
    return table


def fairness_table(standin: StandIn, run_dir: Path, args: argparse.Namespace, targets: Targets) -> Table:
    table = Table(
        f"3. Fairness: a flood of failing GETs (wrk, 30 connections) and a second user's 100 sequential GETs "
        f"at 30% faults, {args.rounds} rounds",
        [
            "flood",
            "proxy",
            "round",
            "flood req/s",
            "second user's failures",
            "its realized floor",
            "failures/floor",
            "its refusals",
        ],
    )
    wrk = require_binary("wrk")  # before the first round: a missing wrk says so at once
    faults: dict[str, object] = {
        "seed": args.seed,
        "rates": {},
        "routes": {"GET /hospitals": {"rates": {"503": 1.0}}, "GET /patients/{id}": {"rates": {"503": 0.3}}},
    }
    summary: dict[tuple[str, str], list[tuple[int, int]]] = {}
    with proxies(standin, run_dir) as proxied:
        for index, (flood_name, authorizations) in enumerate(FLOODS.items()):
            script = run_dir / f"flood-{index}.lua"
            script.write_text(flood_script(authorizations))
            for round_number in range(1, args.rounds + 1):
                for name, proxy in proxied.items():
                    found = fairness_round(standin, proxy, faults, wrk=wrk, script=script, args=args)
                    summary.setdefault((flood_name, name), []).append((found.failures, found.floor))
                    table.add(flood_name, name, round_number, found.flood_rps, found.failures, found.floor,
                              _ratio(found.failures, found.floor), found.refusals)  # fmt: skip
    for (flood_name, name), rounds in summary.items():
        failures, floors = sum(f for f, _ in rounds), sum(f for _, f in rounds)
        table.add(flood_name, name, "all", "", failures, floors, _ratio(failures, floors), "")
        if "ratio" in name:
            met = failures <= 1.2 * floors if floors else failures == 0
            targets.append(
                (f"fairness, a flood by {flood_name}: the second user's failures within 1.2x its realized floor",
                 _ratio(failures, floors), met)
            )  # fmt: skip
    return table


@dataclass(frozen=True)
class FairnessRound:
    flood_rps: str
    failures: int
    floor: int
    refusals: int


def fairness_round(
    standin: StandIn, proxy: NginxProxy, faults: dict[str, object], *, wrk: str, script: Path, args: argparse.Namespace
) -> FairnessRound:
    """One flood (`wrk` with `script`) and the second user's 100 sequential GETs during it."""
    user = DEMO_ACCOUNTS[1].username
    # The second user and the flooding user are at work already: HOSP has answered each
    # 200 before (the budget counts a name as a user of its own once HOSP has accepted
    # it, docs/proxy.md); made-up names never are.
    standin.reset({})
    for headers in (QUIET, FLOODER):
        signed_in = requests.get(proxy.url + PATH, headers=headers, timeout=REQUEST_TIMEOUT)
        if signed_in.status_code != 200:
            raise SystemExit(f"budget_bench: a signing-in GET got {signed_in.status_code}")
    standin.reset(faults)
    flood = subprocess.Popen(
        [wrk, "-t2", "-c30", f"-d{args.flood_seconds}s", "-s", str(script), proxy.url + FLOOD_PATH],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    time.sleep(1.0)  # the flood is under way, and has spent what it can
    start = len(log_lines(proxy))
    answers = []
    with requests.Session() as session:
        for _ in range(100):
            answer = session.get(proxy.url + PATH, headers=QUIET, timeout=REQUEST_TIMEOUT)
            answers.append((answer.status_code, answer.headers.get("Retry-After") == "1"))
    output, _ = flood.communicate(timeout=args.flood_seconds + 30)
    time.sleep(1.5)  # the access log is written in buffers, at least every second
    # The second user's own GETs: a flood may send its name too, to another path.
    lines = [line for line in log_lines(proxy)[start:] if line.get("user") == user and line.get("path") == PATH]
    return FairnessRound(
        flood_rps=next((line.split()[-1] for line in output.splitlines() if line.startswith("Requests/sec")), "?"),
        failures=sum(status >= 400 for status, _ in answers),
        floor=floor_failures(lines, user),
        refusals=sum(refused for _, refused in answers),
    )


def _ratio(value: int, reference: int) -> str:
    """bench.report's ratio, naming the failures where the floor is 0 (rather than "inf")."""
    return f"{value} vs 0" if value and not reference else ratio(value, reference)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--sections", default=",".join(SECTIONS), help="which tables (default: all)")
    p.add_argument("--seed", type=int, default=2024)
    p.add_argument("--outage-rate", type=float, default=300.0, help="GETs per second during the outage")
    p.add_argument("--outage-seconds", type=float, default=25.0)
    p.add_argument("--scaling-seconds", type=float, default=20.0)
    p.add_argument("--rounds", type=int, default=3, help="fairness rounds")
    p.add_argument("--flood-seconds", type=int, default=6)
    p.add_argument("--keep", action="store_true", help="keep the run's logs and configs")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    sections = set(args.sections.split(","))
    unknown = sections - set(SECTIONS)
    if unknown:
        print(
            f"budget_bench: unknown section(s) {', '.join(sorted(unknown))}; use {', '.join(SECTIONS)}", file=sys.stderr
        )
        return 2
    t = TUNING
    print(
        f"budget: ratio {t.retry_budget_ratio:g}, floor {t.retry_budget_floor:g}/s, window {t.retry_budget_window:g} s "
        f"(the defaults); fixed: {FIXED_RATE}/s, burst {FIXED_BURST}; tries {TRIES}",
        flush=True,
    )
    with run_directory(args.keep, "budget-bench", "the logs and configs") as run_dir:
        tables, targets = run(
            run_dir, args, sections, show=lambda table: print("\n" + table.plain() + "\n", flush=True)
        )
    summary = Table("Targets", ["target", "measured", "met"])
    for target, measured, met in targets:
        summary.add(target, measured, "yes" if met else "NO")
    print("\n" + summary.plain() + "\n")
    print("\n\n".join(table.markdown() for table in [*tables, summary]))
    return 0 if all(met for _, _, met in targets) else 1


def _print(table: Table) -> None:
    print("\n" + table.plain() + "\n", flush=True)


def run(
    run_dir: Path, args: argparse.Namespace, sections: set[str], show: Callable[[Table], None]
) -> tuple[list[Table], Targets]:
    """The chosen tables, each shown as it is done, and the targets they measured."""
    tables: list[Table] = []
    targets: Targets = []
    builders = {"outage": outage_table, "scaling": scaling_table, "fairness": fairness_table}
    with StandIn(run_dir / "standin", args.seed) as standin:
        for section in SECTIONS:
            if section in sections:
                (run_dir / section).mkdir()
                table = builders[section](standin, run_dir / section, args, targets)
                show(table)
                tables.append(table)
    return tables, targets


if __name__ == "__main__":
    sys.exit(main())
