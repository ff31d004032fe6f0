"""`make run`'s stack comes up on loopback and each server answers, then stops cleanly."""

from __future__ import annotations

import json
import re
import shutil
import signal
import socket
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import requests

from local.processes import ROOT
from tests.support import STACK_ENV, STACK_TIMEOUT, running_stack, stack_argv

# Ports of the stack: stand-in, NGINX public and internal, chalice local, note worker, moto,
# and the edge's HTTPS and plain HTTP.
SERVERS = 8
# Where the stack prints a server: on loopback, or the edge on its local name.
SERVER_URL = r"https?://(?:127\.0\.0\.1|hosp\.localhost):(\d+)"


def test_the_whole_local_stack_starts_answers_and_stops(tmp_path: Path) -> None:
    done = subprocess.run(
        stack_argv(tmp_path, "--smoke"),
        cwd=ROOT, env=STACK_ENV, capture_output=True, text=True, timeout=STACK_TIMEOUT, check=False,
    )  # fmt: skip

    assert done.returncode == 0, done.stdout + done.stderr
    for server in (
        "proxy -> HOSP", "internal -> HOSP", "chalice local", "note worker", "HOSP stats", "local AWS",
        "screen -> note",  # a screen through the front door, and its note in HOSP
        "audit",  # an admin's export through the front door, downloaded through its link
        "edge -> proxy", "edge http->https",  # HTTPS through the edge, and plain HTTP's 301
    ):  # fmt: skip
        assert f"ok  {server}" in done.stdout
    # No orphans: after the stack stopped, none of its ports answers any more.
    ports = {int(p) for p in re.findall(SERVER_URL + "/", done.stdout)}
    assert len(ports) == SERVERS
    assert not any(answers(port) for port in ports)


def test_ctrl_c_stops_every_server(tmp_path: Path) -> None:
    with running_stack(tmp_path) as (stack, printed):
        ports = {int(p) for p in re.findall(SERVER_URL, printed)}
        assert len(ports) == SERVERS, printed
        assert all(answers(port) for port in ports)
        assert_each_server_is_healthy(printed)
        assert_the_edge_answers_curl_trusting_the_local_ca(printed, tmp_path)

        stack.send_signal(signal.SIGINT)
        assert stack.wait(timeout=STACK_TIMEOUT) == 0

    assert not any(answers(port) for port in ports)


def answers(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def assert_each_server_is_healthy(printed: str) -> None:
    """Once the stack says it is up, each server answers its health check at once."""
    names = "HOSP stand-in|NGINX proxy|NGINX internal|chalice local|note worker|local AWS"
    urls = dict(re.findall(rf"^  ({names}) +(http://\S+)", printed, re.M))
    assert requests.get(urls["HOSP stand-in"] + "/_sim/stats", timeout=5).status_code == 200
    assert requests.get(urls["NGINX proxy"] + "/_proxy/health", timeout=5).json() == {"status": "ok"}
    assert requests.get(urls["chalice local"] + "/health", timeout=5).json()["status"] == "ok"
    assert requests.get(urls["local AWS"] + "/moto-api/", timeout=5).status_code == 200
    assert requests.get(urls["NGINX internal"] + "/_proxy/health", timeout=5).json() == {"status": "ok"}
    assert requests.get(urls["note worker"] + "/health", timeout=5).json()["status"] == "ok"


def assert_the_edge_answers_curl_trusting_the_local_ca(printed: str, run_dir: Path) -> None:
    """The README's way in: curl --cacert <run dir>/edge/ca.pem https://hosp.localhost:<port>/..."""
    edge = re.search(r"^  NGINX edge +(https://\S+)", printed, re.M)
    plain = re.search(r"^  edge, plain +(http://\S+)", printed, re.M)
    assert edge, printed
    assert plain, printed
    curl = shutil.which("curl")
    assert curl, "curl is needed: apt-get install curl"
    done = subprocess.run(
        [curl, "-sS", "--cacert", str(run_dir / "edge" / "ca.pem"), edge[1] + "/_proxy/health"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"status": "ok"}
    answer = requests.get(plain[1] + "/hospitals?a=1", allow_redirects=False, timeout=5)
    assert answer.status_code == 301
    assert answer.headers["Location"].endswith(f":{urlsplit(edge[1]).port}/hospitals?a=1")
