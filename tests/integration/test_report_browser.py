"""The report opens in a real browser (headless Chromium) with no network, and its plots draw.

The HTML is self-contained: Chromium runs with every connection sent to a closed port,
so a script, stylesheet, font or image fetched from elsewhere would be missing. The
screenshot must show the plots' lines in their colours, and the DOM Chromium built must
hold every plot as an SVG of non-zero size.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from PIL import Image

from bench.access_logs import Rates, write
from infra.monitoring.report import cli, render
from local.processes import closed_port

MISSING_CHROMIUM = (
    "Chromium is not installed: `make test` installs it (Debian: apt-get install chromium); "
    "the report's browser test opens the HTML in it"
)
PLOTS = 7


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.fail(MISSING_CHROMIUM, pytrace=False)
    return found


def run_chromium(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    offline = f"127.0.0.1:{closed_port()}"
    argv = [
        chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
        f"--proxy-server={offline}", "--proxy-bypass-list=<-loopback>", f"--user-data-dir={tmp_path / 'profile'}",
        *args,
    ]  # fmt: skip
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("report")
    write(work / "access.json", 5_000, datetime(2026, 11, 30, 8), timedelta(hours=6), Rates(first_failure=0.3))
    assert cli.main(["--log", str(work / "access.json"), "--out", str(work / "report.html")]) == 0
    return work / "report.html"


def test_the_page_refers_to_nothing_outside_itself(page: Path) -> None:
    html = page.read_text(encoding="utf-8")
    # Links and url() point inside the page only (#id: the SVG's glyphs and clip paths).
    not_inside = r"""\s*(?:"(?!#)|'(?!#)|(?![#"']))"""  # a value that does not start with #
    assert not re.search(rf"(?:src|href)\s*={not_inside}|url\({not_inside}|@import", html)
    assert re.search(r"""href="#|url\(#""", html)  # the pattern above does see them
    assert html.count("<svg") == PLOTS


def test_the_plots_draw_in_a_browser_with_no_network(page: Path, tmp_path: Path) -> None:
    shot = tmp_path / "report.png"
    taken = run_chromium("--window-size=1280,4200", f"--screenshot={shot}", page.as_uri(), tmp_path=tmp_path)
    assert shot.exists(), taken.stderr[-2000:]
    dom = run_chromium("--dump-dom", page.as_uri(), tmp_path=tmp_path)
    assert dom.returncode == 0, dom.stderr[-2000:]

    # Every plot is in the DOM Chromium built, with its drawn size.
    sizes = re.findall(r'<svg [^>]*width="([\d.]+)pt" height="([\d.]+)pt"', dom.stdout)
    assert len(sizes) == PLOTS
    assert all(float(w) > 300 and float(h) > 60 for w, h in sizes), sizes
    # The screenshot shows the lines: many pixels of what users saw (blue) and of HOSP (orange).
    image = Image.open(shot).convert("RGB")
    colours: list[tuple[int, tuple[int, int, int]]] = image.getcolors(maxcolors=1 << 20) or []  # type: ignore[assignment]
    drawn = {
        name: sum(count for count, rgb in colours if _near(rgb, hex_colour))
        for name, hex_colour in (("users", render.USERS), ("hosp", render.HOSP), ("refused", render.REFUSED))
    }
    assert drawn["users"] > 3000, drawn
    assert drawn["hosp"] > 3000, drawn
    assert drawn["refused"] > 300, drawn
    # And the headline table's text: the page is not blank above the plots.
    assert "client requests" in dom.stdout


def _near(rgb: tuple[int, int, int], hex_colour: str, tolerance: int = 24) -> bool:
    target = tuple(int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
    return all(abs(a - b) <= tolerance for a, b in zip(rgb, target, strict=True))
