"""docs/hosp-api.yaml holds through the proxy: schemathesis, every check, against the real NGINX and stand-in.

It runs through NGINX's internal listener, which sends every request to HOSP;
the public one sends X-ray screens to the interceptor, whose answers the
screen tests compare with HOSP's byte for byte.

A tool written elsewhere generates requests from the document (valid ones, invalid
ones, undeclared methods, sequences that follow the document's links) and checks each
answer against it: status codes, content types, schemas, 405 with Allow, invalid
input refused, no 5xx. Bounded: a fixed seed and a fixed number of examples per
operation, so that every run sends the same requests.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.nginx.render import Tuning
from local.nginx_proxy import NginxProxy
from local.processes import ROOT
from tests.support import DEMO_AUTH, Hosp

API_DOCUMENT = ROOT / "docs" / "hosp-api.yaml"
SEED = 1
EXAMPLES_PER_OPERATION = 20
RUN_TIMEOUT = 300  # seconds; a run takes well under a minute
INSTALL_HINT = "schemathesis is pinned in requirements/dev.in; `make test` installs it"


@pytest.fixture
def front_door(fresh_hosp: Hosp, tmp_path: Path) -> Iterator[NginxProxy]:
    # The budget is generous: schemathesis sends hundreds of requests a second.
    tuning = Tuning(retry_budget_ratio=10, retry_budget_floor=1000)
    with NginxProxy(fresh_hosp.address, tmp_path / "nginx", tuning=tuning) as proxy:
        yield proxy
    fresh_hosp.reset()  # leave no generated records to the tests that follow


def schemathesis_command() -> str:
    command = Path(sys.executable).parent / "schemathesis"
    if not command.exists():
        pytest.fail(f"{command} is missing: {INSTALL_HINT}", pytrace=False)
    return str(command)


def test_the_api_document_holds_through_the_proxy_with_every_check(front_door: NginxProxy, tmp_path: Path) -> None:
    done = subprocess.run(
        [
            schemathesis_command(), "run", str(API_DOCUMENT),
            "--url", front_door.internal_url,
            # A header, not --auth: with --auth, schemathesis puts the credentials back
            # into the negative cases that remove them, and then calls their (valid)
            # answers a failure.
            "--header", f"Authorization: {DEMO_AUTH['Authorization']}",
            "--exclude-path-regex", "^/_sim",
            "--checks", "all",
            "--seed", str(SEED),
            "--max-examples", str(EXAMPLES_PER_OPERATION),
            "--workers", "1",
            "--no-color",
        ],
        cwd=tmp_path,  # schemathesis keeps a cache in its working directory
        capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False,
    )  # fmt: skip

    report = done.stdout + done.stderr
    assert done.returncode == 0, report[-6000:]
    # Every operation outside /_sim was exercised: a run that tested nothing must not pass.
    selected = re.search(r"Selected: (\d+)/\d+", report)
    tested = re.search(r"Tested: (\d+)", report)
    assert selected, report[-3000:]
    assert tested, report[-3000:]
    assert int(tested.group(1)) == int(selected.group(1)) > 0
