"""The old-domain redirect (infra/cloudfront/redirect.js), run from its file in node.

Each test builds a viewer-request event in CloudFront's documented shape (lower-case
header names, the query string as an object of `value` / `multiValue` entries, the URI
still percent-encoded), runs the function's `handler` on it through
run_cloudfront_function.js, and checks the answer: a redirect for the old names, the
request itself otherwise.

A missing node fails these tests rather than skipping them: an untested edge function
must not pass as a green run.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from infra.cloudfront import function
from tests.infra.cfn import INFRA

FUNCTION = INFRA / "cloudfront" / "redirect.js"
HARNESS = Path(__file__).with_name("run_cloudfront_function.js")
OLD = "hosp.old.example"
NEW = "hosp.new.example"

MISSING_NODE = (
    "node is needed to run the CloudFront Function infra/cloudfront/redirect.js: "
    "install it (`apt-get install nodejs`; `make test` does so when run as root)."
)

Query = dict[str, Any]


def _value(*values: str) -> dict[str, Any]:
    """One query parameter as CloudFront gives it: `value` is the first, `multiValue` all
    of them when there are several."""
    entry: dict[str, Any] = {"value": values[0]}
    if len(values) > 1:
        entry["multiValue"] = [{"value": v} for v in values]
    return entry


def _event(
    host: str | None = OLD, method: str = "GET", uri: str = "/hospitals", querystring: Query | None = None
) -> dict[str, Any]:
    headers: dict[str, Any] = {"accept": {"value": "application/json"}}
    if host is not None:
        headers["host"] = {"value": host}
    return {
        "version": "1.0",
        "context": {"eventType": "viewer-request", "distributionId": "EDFDVBD6EXAMPLE", "requestId": "r-1"},
        "viewer": {"ip": "198.51.100.7"},
        "request": {
            "method": method,
            "uri": uri,
            "querystring": querystring or {},
            "headers": headers,
            "cookies": {},
        },
    }


def _run(event: dict[str, Any], function: Path = FUNCTION) -> dict[str, Any]:
    node = shutil.which("node") or shutil.which("nodejs")
    assert node, MISSING_NODE
    result = subprocess.run(
        [node, str(HARNESS), str(function)],
        input=json.dumps(event),
        capture_output=True,
        text=True,
        encoding="utf-8",
        check=False,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    answer: dict[str, Any] = json.loads(result.stdout)
    return answer


def _location(event: dict[str, Any]) -> str:
    answer = _run(event)
    assert answer["statusCode"] in (301, 308), answer
    return str(answer["headers"]["location"]["value"])


# ------------------------------------------------------------------ status by method


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_get_and_head_on_the_old_name_are_moved_permanently(method: str) -> None:
    answer = _run(_event(method=method))
    assert answer["statusCode"] == 301
    assert answer["headers"]["location"] == {"value": f"https://{NEW}/hospitals"}


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
def test_other_methods_get_308_so_the_method_and_body_are_kept(method: str) -> None:
    answer = _run(_event(method=method, uri="/patients/1/screen"))
    assert answer["statusCode"] == 308
    assert answer["headers"]["location"] == {"value": f"https://{NEW}/patients/1/screen"}


def test_a_redirect_carries_only_its_location_and_a_short_lifetime() -> None:
    """A browser keeps a 301 without Cache-Control as long as it likes; a short max-age lets
    a rolled-back move stop redirecting."""
    answer = _run(_event())
    assert set(answer["headers"]) == {"location", "cache-control"}
    max_age = re.fullmatch(r"max-age=(\d+)", answer["headers"]["cache-control"]["value"])
    assert max_age
    assert 0 < int(max_age[1]) <= 24 * 3600


# ------------------------------------------------------------------ path and query kept


def test_no_query_gives_no_question_mark() -> None:
    assert _location(_event(uri="/notes")) == f"https://{NEW}/notes"


@pytest.mark.parametrize(
    ("querystring", "expected"),
    [
        ({"patient_id": _value("1")}, "patient_id=1"),
        ({"user": _value("a"), "status": _value("2xx")}, "user=a&status=2xx"),
        ({"tag": _value("x", "y", "x")}, "tag=x&tag=y&tag=x"),
        ({"flag": _value(""), "a": _value("1")}, "flag&a=1"),
        ({"q": _value("caf%C3%A9%20%26%3D%2B")}, "q=caf%C3%A9%20%26%3D%2B"),
        ({"na%20me": _value("v%2Fw")}, "na%20me=v%2Fw"),
        ({"percent": _value("100%")}, "percent=100%"),
    ],
    ids=["one", "two-keys", "multi-value", "no-value", "encoded", "encoded-key", "bare-percent"],
)
def test_the_query_is_rebuilt_as_cloudfront_hands_it(querystring: Query, expected: str) -> None:
    """Keys and values go out as they came in, still percent-encoded: nothing is decoded,
    nothing is encoded twice."""
    assert _location(_event(uri="/notes", querystring=querystring)) == f"https://{NEW}/notes?{expected}"


def test_unicode_is_sent_as_its_utf8_percent_encoding() -> None:
    """A header carries ASCII only: raw non-ASCII or a space becomes its UTF-8
    percent-encoding, the form a browser would have sent."""
    location = _location(_event(uri="/notes/café", querystring={"name": _value("Łukasz Ö"), "ü": _value("1")}))
    assert location == f"https://{NEW}/notes/caf%C3%A9?name=%C5%81ukasz%20%C3%96&%C3%BC=1"


def test_a_very_long_query_is_kept_whole() -> None:
    querystring = {f"k{i}": _value("v" * 60 + "%20") for i in range(120)}
    expected = "&".join(f"k{i}={'v' * 60}%20" for i in range(120))
    assert len(expected) > 8000
    assert _location(_event(querystring=querystring)) == f"https://{NEW}/hospitals?{expected}"


@pytest.mark.parametrize(
    "uri", ["/", "/patients/1/notes", "/a%2Fb/c%20d", "/x;y=1", "/trailing/", "//double", "/caf%C3%A9"]
)
def test_the_path_is_kept_exactly(uri: str) -> None:
    assert _location(_event(uri=uri)) == f"https://{NEW}{uri}"


# ------------------------------------------------------------------ which hosts


@pytest.mark.parametrize("host", [OLD, "HOSP.OLD.EXAMPLE", "Hosp.Old.Example", f"{OLD}:443", f"{OLD}:80", f"{OLD}."])
def test_the_old_name_is_recognised_in_any_case_with_a_port_or_a_final_dot(host: str) -> None:
    answer = _run(_event(host=host, querystring={"a": _value("1")}))
    assert answer["statusCode"] == 301
    assert answer["headers"]["location"] == {"value": f"https://{NEW}/hospitals?a=1"}


@pytest.mark.parametrize(
    "host",
    [NEW, NEW.upper(), f"{NEW}:443", "elsewhere.example", f"sub.{OLD}", f"{OLD}.evil.example", "d111.cloudfront.net"],
)
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_any_other_host_passes_through_untouched(host: str, method: str) -> None:
    event = _event(host=host, method=method, uri="/a%2Fb", querystring={"tag": _value("x", "y"), "f": _value("")})
    assert _run(event) == event["request"]


def test_a_request_without_host_passes_through() -> None:
    event = _event(host=None)
    assert _run(event) == event["request"]


# ------------------------------------------------------------------ the names the deploy fills in


def _with_names(old_hosts: list[str], new_host: str, path: Path) -> Path:
    """The function with other names, filled in as the deploy fills them."""
    path.write_text(function.with_names(old_hosts, new_host), encoding="utf-8")
    return path


def test_the_deploy_can_fill_in_several_old_names(tmp_path: Path) -> None:
    function = _with_names(["old-a.example", "WWW.Old-A.example"], "hosp.example.org", tmp_path / "redirect.js")
    for host in ("old-a.example", "WWW.OLD-A.EXAMPLE:443"):
        answer = _run(_event(host=host, method="DELETE", uri="/notes/9"), function)
        assert answer["statusCode"] == 308
        assert answer["headers"]["location"] == {"value": "https://hosp.example.org/notes/9"}
    passing = _event(host=OLD)
    assert _run(passing, function) == passing["request"]
