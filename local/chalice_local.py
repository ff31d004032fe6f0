"""`chalice local`, with Nagle's algorithm off on its connections.

    python -m local.chalice_local --host 127.0.0.1 --port 8000 --stage local

chalice local answers through Python's http.server, which sends the status
line and headers in one write and the body in a second. With Nagle's
algorithm on, the body waits for the peer's delayed ACK of the headers: about
40 ms added to four screens in ten through NGINX (docs/benchmarks.md), which
API Gateway does not add.
Turning it off (TCP_NODELAY, as http.server allows) removes that artefact of
the local stack.

It also installs the local audit engine (local/audit_engine.py: DuckDB over the
proxy's access log) before chalice loads the app, so that AUDIT_ENGINE=duckdb
has an engine: the Lambda package holds only Athena's. Run it with
--no-autoreload, as the local stack does: chalice's reloader would start the app
in a plain `chalice local` child, without either.
"""

from __future__ import annotations

import sys

from chalice import local
from chalice.cli import main as chalice_main

from local import audit_engine


def main() -> int:
    local.ChaliceRequestHandler.disable_nagle_algorithm = True
    audit_engine.install()
    sys.argv = ["chalice", "local", *sys.argv[1:]]
    return int(chalice_main() or 0)


if __name__ == "__main__":
    sys.exit(main())
