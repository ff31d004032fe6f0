"""Helpers shared by the tests: the HOSP stand-in as a process, demo credentials."""

from __future__ import annotations

from local.hosp_standin.process import StandInProcess
from local.hosp_standin.store import DEMO_ACCOUNTS

# The demo account the tests act as: a nurse (docs/hosp-api.yaml).
DEMO_USER, DEMO_PASSWORD = DEMO_ACCOUNTS[0].username, DEMO_ACCOUNTS[0].password
DEMO_AUTH = {"Authorization": DEMO_ACCOUNTS[0].authorization}
# HOSP's idle keep-alive timeout in the tests; the proxy's must stay below it.
HOSP_IDLE_TIMEOUT = 2.0


class Hosp(StandInProcess):
    """The stand-in with the shorthands the tests read best with."""

    def faults(self, **update: object) -> None:
        self.set_faults(update)

    def script(self, *outcomes: str) -> None:
        """HOSP's outcomes for its next requests, in arrival order."""
        self.set_faults({"script": list(outcomes)})

    def received(self) -> int:
        """API requests HOSP received since the last reset."""
        return int(self.stats()["total"])
