"""`python -m local.stack --help` names itself as it is run and gives every port's default."""

from __future__ import annotations

import re

from local import stack


def test_the_help_names_the_command_and_every_ports_default() -> None:
    text = stack.build_parser().format_help()
    assert text.startswith("usage: python -m local.stack ")
    ports = re.findall(r"--([a-z-]+-port) [A-Z_]+\s+(.*?)\(default: (\d+)\)", text, re.DOTALL)
    defaults = {name: int(port) for name, _, port in ports}
    assert defaults == {
        "hosp-port": 9000,
        "proxy-port": 8080,
        "internal-port": 8081,
        "chalice-port": 8000,
        "worker-port": 8001,
        "aws-port": 5000,
        "edge-port": stack.EDGE_PORT,
        "edge-http-port": stack.EDGE_HTTP_PORT,
    }
