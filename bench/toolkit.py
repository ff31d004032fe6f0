"""What every benchmark shares: a directory for its run, the order of its runs, its pre-flight checks."""

from __future__ import annotations

import contextlib
import resource
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.report import Table


@contextlib.contextmanager
def run_directory(keep: bool, prefix: str, holds: str) -> Iterator[Path]:
    """A new directory for one run's files (named prefix-...), removed at the end.

    keep: left in place, and its path printed as "`holds` are kept in PATH".
    """
    if keep:
        path = Path(tempfile.mkdtemp(prefix=f"{prefix}-"))
        print(f"{holds} are kept in {path}")
        yield path
        return
    with tempfile.TemporaryDirectory(prefix=f"{prefix}-") as name:
        yield Path(name)


def alternated(names: Sequence[str], rounds: int) -> list[str]:
    """Each name once per step, for `rounds` steps, the order rotated by one at each step.

    So that every target is measured right after every other as often, and drift
    (a warming cache, a growing backlog, a neighbour's load) falls on all alike.
    With two names: A B, B A, A B, ...
    """
    return [name for step in range(rounds) for name in [*names[step % len(names) :], *names[: step % len(names)]]]


@dataclass(frozen=True)
class Check:
    """One pre-flight request against one target: what it should see, and what it saw."""

    target: str
    case: str
    expected: str
    seen: str

    @property
    def passed(self) -> bool:
        return self.expected == self.seen


def checks_table(title: str, target_header: str, checks: Sequence[Check]) -> Table:
    table = Table(title, [target_header, "case", "expected", "seen", ""])
    for check in checks:
        table.add(check.target, check.case, check.expected, check.seen, "ok" if check.passed else "FAILED")
    return table


def peak_rss_kib() -> int:
    """This process's peak resident memory in KiB: VmHWM, its memory's own high-water mark.

    Not ru_maxrss: Linux keeps the larger of it and the memory the process had before
    its execve, and a child started with vfork (as subprocess does) counts the parent's
    peak as its own; VmHWM starts afresh with the new program.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
