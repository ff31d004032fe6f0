"""Command line: python -m local.hosp_standin --port 9000 --fault 503=0.1 --fault reset=0.05.

Prints "HOSP stand-in listening on http://HOST:PORT" once it accepts connections, and
exits cleanly on SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from types import FrameType

from local.hosp_standin.faults import (
    DEFAULT_CONFIG,
    FaultConfig,
    FaultConfigError,
    apply_update,
    load_config_text,
    parse_fault_flag,
)
from local.hosp_standin.server import DEFAULT_IDLE_TIMEOUT, start_server


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m local.hosp_standin",
        description="A local stand-in for the HOSP API, with fault injection (see docs/hosp-api.yaml).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=9000, help="port to listen on; 0 picks a free one (default 9000)")
    parser.add_argument(
        "--seed", type=int, help="seed of the random faults (overrides the seed in --faults; default 1)"
    )
    parser.add_argument(
        "--faults",
        metavar="JSON|@FILE",
        help='fault config in the JSON shape of /_sim/faults, inline or @file, e.g. \'{"rates": {"503": 0.1}}\'',
    )
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="one fault setting, applied after --faults; repeatable: 500|502|503|504|reset=RATE, "
        "slow=RATE[:MIN_MS:MAX_MS], commit_then_fail=RATE[:502|reset], outage=true|false",
    )
    parser.add_argument(
        "--idle-timeout",
        type=float,
        default=DEFAULT_IDLE_TIMEOUT,
        help="seconds before an idle keep-alive connection is closed (default 20, like Puma); "
        "the proxy's upstream keepalive_timeout must be lower",
    )
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    return parser


def fault_config(args: argparse.Namespace) -> FaultConfig:
    """The start-up fault config from --faults, then each --fault, then --seed."""
    config = DEFAULT_CONFIG
    if args.faults:
        config = apply_update(config, load_config_text(args.faults))
    for flag in args.fault:
        config = apply_update(config, parse_fault_flag(flag))
    if args.seed is not None:
        config = apply_update(config, {"seed": args.seed})
    return config


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = fault_config(args)
    except (FaultConfigError, OSError) as error:
        parser.error(str(error))
    try:
        server = start_server(args.host, args.port, faults=config, idle_timeout=args.idle_timeout, verbose=args.verbose)
    except OSError as error:
        print(f"cannot listen on {args.host}:{args.port}: {error}", file=sys.stderr)
        return 1

    stop_requested = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop_requested.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    print(f"HOSP stand-in listening on {server.url}", flush=True)
    stop_requested.wait()
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
