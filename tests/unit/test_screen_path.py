"""One definition of an X-ray screen's path (chalicelib/screen_path.py), for the proxy's map and the trail."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from chalicelib import screen_path
from chalicelib.audit import filters
from infra import screen_path as generated
from infra.nginx import render


def test_the_proxys_template_is_generated_from_the_definition() -> None:
    assert generated.main(["--check"]) == 0
    assert generated.TEMPLATE.read_text(encoding="utf-8") == generated.render()


def test_a_template_that_differs_from_the_definition_is_refused(tmp_path: Path) -> None:
    stale = tmp_path / "screen-paths.conf"
    stale.write_text(generated.render().replace(r"(?:\.[A-Za-z0-9]+)?", r"(?:\.json)?"), encoding="utf-8")

    assert generated.main(["--check", "--template", str(stale)]) == 1
    assert generated.main(["--template", str(stale)]) == 0
    assert generated.main(["--check", "--template", str(stale)]) == 0


def test_the_rendered_proxy_and_the_trail_use_the_same_expression() -> None:
    config = render.render(render.ProxySettings.for_variant("local", "127.0.0.1:9000", Path("/tmp/unused")))
    trail = filters.parse({}, datetime(2026, 12, 6, tzinfo=UTC)).query_parameters()["screen_path"]

    entries = re.findall(r'^\s*"~\^public:POST:(?P<path>[^"]*)"\s+patient;$', config, re.MULTILINE)
    assert entries == [screen_path.SCREEN_PATH.replace("{id}", "(?<screen_patient>[0-9]+)") + r"\z"]
    assert trail == "^" + screen_path.SCREEN_PATH.replace("{id}", "[0-9]+") + r"\z"


@pytest.mark.parametrize(
    ("path", "screen"),
    [
        ("/patients/4/screen", True),
        ("/patients/4/screen.json", True),
        ("/patients/4/screen.JSON", True),
        ("/patients/4/screen.xml/", True),
        ("/patients/04/screen", True),
        ("/patients/4/screen\n", False),
        ("/patients/4/screens", False),
        ("/patients/4/screen.", False),
        ("/patients/4/screen/x", False),
        ("/patients/x/screen", False),
    ],
)
def test_the_definition_matches_the_whole_path(path: str, screen: bool) -> None:
    # Python's re spells the end of the text \Z.
    assert bool(re.match(screen_path.pattern().replace(r"\z", r"\Z"), path)) is screen
