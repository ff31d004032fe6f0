"""`make run` refuses to start with bad faults or a busy port, and says why; "up" means healthy, on our own ports."""

from __future__ import annotations

import contextlib
import io
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from local import stack as local_stack
from local.edge.server import LocalEdge, new_origin_secret
from local.hosp_standin.__main__ import main as standin_main
from local.hosp_standin.process import StandInProcess
from local.nginx_proxy import NginxProxy
from local.processes import ROOT, CommandServer, LoopbackServer, ProcessError, closed_port, free_port
from local.stack import Member, Ports, Stack, run

STACK_TIMEOUT = 180  # a bound for a stack that hangs; passing runs take seconds
FAST_TIMEOUT = 60  # for runs that must stop before starting any server


def stack_env(**extra: str) -> dict[str, str]:
    """The environment without a FAULTS the developer may have exported."""
    env = {key: value for key, value in os.environ.items() if key != "FAULTS"}
    return {**env, **extra}


def run_stack(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "local.stack", "--smoke", *args],
        cwd=ROOT, env=env or stack_env(), capture_output=True, text=True, timeout=STACK_TIMEOUT, check=False,
    )  # fmt: skip


def explicit_ports(ports: list[int], run_dir: Path) -> list[str]:
    hosp, proxy, chalice, aws = ports
    return [
        "--hosp-port", str(hosp), "--proxy-port", str(proxy), "--chalice-port", str(chalice),
        "--aws-port", str(aws), "--run-dir", str(run_dir),
    ]  # fmt: skip


@pytest.fixture
def signal_handlers() -> Iterator[None]:
    """`run` takes over SIGINT and SIGTERM, as a program does; give them back to pytest."""
    saved = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


@pytest.fixture
def stack_main(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], signal_handlers: None
) -> Callable[[list[str]], tuple[int, str, str]]:
    """`python -m local.stack --smoke ARGS` run in this process: (exit code, stdout, stderr).

    In-process, so that each case costs no interpreter start; the command line itself
    is exercised through make below.
    """
    monkeypatch.delenv("FAULTS", raising=False)

    def call(args: list[str]) -> tuple[int, str, str]:
        code = local_stack.main(["--smoke", *args])
        printed = capsys.readouterr()
        return code, printed.out, printed.err

    return call


@pytest.mark.parametrize("busy", [0, 1, 2, 3])
def test_a_foreign_listener_on_a_port_stops_the_stack_before_it_starts(
    busy: int, tmp_path: Path, stack_main: Callable[[list[str]], tuple[int, str, str]]
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as foreign:
        ports = [free_port() for _ in range(4)]
        ports[busy] = foreign.getsockname()[1]

        code, out, err = stack_main(explicit_ports(ports, tmp_path))

    assert code != 0
    assert f"port {ports[busy]} is in use by python" in err
    assert f"(pid {os.getpid()})" in err  # this test's process holds it
    assert "is up" not in out
    assert not list(tmp_path.iterdir())  # nothing was started


def stand_in_reason(faults: str) -> str:
    """What the stand-in itself says when started with these faults (its argparse error)."""
    argv = ["--port", "0", *[arg for flag in faults.split(",") for arg in ("--fault", flag)]]
    refused = io.StringIO()
    with contextlib.redirect_stderr(refused), pytest.raises(SystemExit) as exited:
        standin_main(argv)
    assert exited.value.code == 2, refused.getvalue()  # refused, not started
    return refused.getvalue().strip().splitlines()[-1].split(" error: ", 1)[1]


@pytest.mark.parametrize(
    ("faults", "about"),
    [("503=2", "503"), ("bogus=0.1", "bogus"), ("503", "503"), ("503=0.1'", "503=0.1'"), ("503=0.6,504=0.6", "1.2")],
)
def test_bad_faults_are_refused_with_the_stand_ins_reason(
    faults: str, about: str, tmp_path: Path, stack_main: Callable[[list[str]], tuple[int, str, str]]
) -> None:
    reason = stand_in_reason(faults)
    assert about in reason

    code, _, err = stack_main(["--free-ports", "--run-dir", str(tmp_path), "--faults", faults])

    assert code == 2
    assert reason in err
    assert not list(tmp_path.iterdir())  # refused before any server started


def test_faults_come_from_the_environment_by_default(tmp_path: Path) -> None:
    done = run_stack(["--free-ports", "--run-dir", str(tmp_path)], env=stack_env(FAULTS="bogus=0.1"))

    assert done.returncode == 2
    assert stand_in_reason("bogus=0.1") in done.stderr


def test_make_run_passes_a_quoted_fault_value_through_unharmed() -> None:
    # -o: never reinstall the virtual environment from here.
    done = subprocess.run(
        ["make", "-o", ".venv/.installed", "run", "FAULTS=503=0.1'"],
        cwd=ROOT, env=stack_env(), capture_output=True, text=True, timeout=FAST_TIMEOUT, check=False,
    )  # fmt: skip

    assert done.returncode != 0
    assert stand_in_reason("503=0.1'") in done.stderr


def stack_with_first_server(
    tmp_path: Path, argv: list[str], port: int, health_path: str | None = None, startup_timeout: float = 30
) -> Stack:
    """A stack whose first server (moto) is replaced by `argv`."""
    ports = Ports(free_port(), free_port(), free_port(), free_port(), free_port(), port)
    stack = Stack(ports, tmp_path, faults=None, seed=1)
    server = CommandServer(argv, port, tmp_path / "first.log", health_path=health_path, startup_timeout=startup_timeout)
    stack.members[0] = Member("local AWS (moto)", server)
    return stack


@pytest.mark.usefixtures("signal_handlers")
def test_the_stack_is_not_up_while_a_server_only_accepts_connections(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_port()
    # Accepts connections but never answers HTTP; exits after a while so that a stack
    # which wrongly calls it up still ends, with its up-message printed.
    silent = f"import socket, time; s = socket.create_server(('127.0.0.1', {port})); time.sleep(20)"
    stack = stack_with_first_server(
        tmp_path, [sys.executable, "-c", silent], port, health_path="/moto-api/", startup_timeout=1
    )

    assert run(stack, smoke=False) == 1

    printed = capsys.readouterr()
    assert "is up" not in printed.out
    assert "local AWS (moto) did not start" in printed.err
    assert "health check" in printed.err


@pytest.mark.usefixtures("signal_handlers")
def test_a_server_that_exits_during_startup_shows_the_end_of_its_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_port()
    failing = "import sys; print('cannot open the database: disk full', file=sys.stderr); sys.exit(3)"
    stack = stack_with_first_server(tmp_path, [sys.executable, "-c", failing], port)

    assert run(stack, smoke=False) == 1

    printed = capsys.readouterr()
    assert "local AWS (moto) did not start" in printed.err
    assert "exited with code 3" in printed.err
    assert "cannot open the database: disk full" in printed.err


# --- a server is started only once the process we started holds its ports ------------------------
# A second server on a taken port must fail its start, not pass its health check against the
# server that holds the port and exit later: NGINX retries its bind for some seconds, and two
# edges sharing a CA answer the same TLS check.


def nginx_proxy(run_dir: Path, port: int = 0, internal_port: int = 0) -> NginxProxy:
    return NginxProxy(upstream=f"127.0.0.1:{closed_port()}", run_dir=run_dir, port=port, internal_port=internal_port)


def local_edge(run_dir: Path, port: int = 0, http_port: int = 0) -> LocalEdge:
    # One run_dir for both edges: one CA, so that the TLS health check cannot tell them apart.
    return LocalEdge(
        origin=f"127.0.0.1:{closed_port()}", run_dir=run_dir, origin_secret=new_origin_secret(),
        port=port, http_port=http_port,
    )  # fmt: skip


def second_server(kind: str, first: LoopbackServer, run_dir: Path) -> tuple[LoopbackServer, int]:
    """A second server of `kind` on one or all of `first`'s ports, and a port it cannot have."""
    if isinstance(first, NginxProxy):
        if kind == "proxy":
            return nginx_proxy(run_dir, first.port, first.internal_port), first.port
        return nginx_proxy(run_dir, free_port(), first.internal_port), first.internal_port
    if isinstance(first, LocalEdge):
        if kind == "edge":
            return local_edge(first.run_dir, first.port, first.http_port), first.port
        return local_edge(first.run_dir, free_port(), first.http_port), first.http_port
    return StandInProcess(run_dir, port=first.port), first.port


@pytest.mark.parametrize(
    "kind",
    ["proxy", "proxy, its internal port only", "edge", "edge, its plain-HTTP port only", "HOSP stand-in"],
)
def test_a_server_on_a_taken_port_fails_its_start_and_says_who_holds_the_port(kind: str, tmp_path: Path) -> None:
    first: LoopbackServer
    if kind.startswith("proxy"):
        first = nginx_proxy(tmp_path / "first")
    elif kind.startswith("edge"):
        first = local_edge(tmp_path / "edge")
    else:
        first = StandInProcess(tmp_path / "first")
    with first:
        assert first.process is not None
        second, taken = second_server(kind, first, tmp_path / "second")
        started = time.monotonic()
        try:
            with pytest.raises(ProcessError) as failed:
                second.start()
        finally:
            second.stop()
        assert time.monotonic() - started < FAST_TIMEOUT
        name = "python" if kind == "HOSP stand-in" else "nginx"
        assert re.search(rf"port {taken} is in use by [^;]*\b{name} \(pid {first.process.pid}\)", str(failed.value))
        assert second.process is None  # stopped, not left to exit later
        assert first.healthy()
        assert first.process.poll() is None
