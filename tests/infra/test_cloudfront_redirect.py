"""The old-domain redirect (infra/cloudfront/redirect.js), run from its file in node.

Each test builds a viewer-request event in CloudFront's documented shape (lower-case
header names, the query string as an object of `value` / `multiValue` entries, the URI
still percent-encoded), runs the function's `handler` on it through
run_cloudfront_function.js, and checks the answer: a redirect for the old names, the
request itself otherwise.

The query has two paths. CloudFront's runtime 2.0 gives the request a method,
`rawQueryString()`: the query exactly as the viewer sent it, which the redirect carries
as it is ("the raw query" below; the event's `rawQueryString` field, which the harness
turns into that method). A request without the method gets the query rebuilt from the
object: the tests whose events have no `rawQueryString` ("the fallback" below) are that
path's.

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
# The methods CloudFront lets through (distribution.yaml's AllowedMethods).
SAFE_METHODS = ["GET", "HEAD"]
UNSAFE_METHODS = ["POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


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


def _parsed(raw: str | None) -> Query:
    """CloudFront's object for a raw query: pairs split at "&" (empty ones dropped), each at
    its first "=", nothing decoded; a key without "=" has the value ""."""
    pairs: dict[str, list[str]] = {}
    for pair in (raw or "").split("&"):
        if pair:
            key, _, value = pair.partition("=")
            pairs.setdefault(key, []).append(value)
    return {key: _value(*values) for key, values in pairs.items()}


def _raw_event(raw: str | None, host: str | None = OLD, method: str = "GET", uri: str = "/notes") -> dict[str, Any]:
    """An event as runtime 2.0 gives it: the object, and the raw query (None: no "?")."""
    event = _event(host=host, method=method, uri=uri, querystring=_parsed(raw))
    event["request"]["rawQueryString"] = raw
    return event


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


# ------------------------------------------------------------------ the raw query kept

# 8,192 bytes is CloudFront's limit on a URL: queries just under it.
LONG_RAW_QUERY = "&".join(f"k{i}={'v' * 60}%20" for i in range(120))[:8100]
# 1,500 distinct keys, from the last to the first (not the order a sort or a hash would
# give), bare, with an empty value and with a value in turn.
MANY_KEYS_QUERY = "&".join(
    f"{i:x}" if i % 3 == 0 else f"{i:x}=" if i % 3 == 2 else f"{i:x}={i % 7}" for i in range(1499, -1, -1)
)


@pytest.mark.parametrize(
    "raw",
    [
        "a=&b",
        "&&",
        "a=1&b=2&a=3",
        "",
        None,
        "patient_id=1",
        "&a=1&&b&",
        "=v&k=&a==b",
        "a=1;b=2&q=?x/y",
        "q=caf%C3%A9%20%26%3D%2B&na%20me=v%2Fw&percent=100%&plus=a+b",
        "next=%0d%0aSet-Cookie:%20x=1&n=%0D%0A",
        LONG_RAW_QUERY,
        MANY_KEYS_QUERY,
    ],
    ids=[
        "empty-value-and-bare-key", "empty-pairs", "interleaved-keys", "empty-after-question-mark",
        "no-question-mark", "one", "empty-pairs-around", "equals-signs", "other-delimiters", "percent-encoded",
        "encoded-crlf", "8kB", "1500-keys",
    ],
)  # fmt: skip
def test_the_raw_query_is_kept_exactly(raw: str | None) -> None:
    """The query as the viewer sent it, byte for byte: "?" with nothing after it stays, no
    "?" gives none, and nothing is dropped, reordered, decoded or encoded."""
    assert _location(_raw_event(raw)) == f"https://{NEW}/notes" + ("" if raw is None else f"?{raw}")


def test_the_long_raw_queries_are_as_long_as_cloudfront_takes() -> None:
    assert 8000 < len(LONG_RAW_QUERY) < 8192
    assert len(MANY_KEYS_QUERY) < 8192
    assert len(_parsed(MANY_KEYS_QUERY)) == 1500


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("name=Łukasz Ö&ü=1", "name=%C5%81ukasz%20%C3%96&%C3%BC=1"),
        ("q=café%C3%A9", "q=caf%C3%A9%C3%A9"),
        ("a=1\r\nSet-Cookie: x=1", "a=1%0D%0ASet-Cookie:%20x=1"),
        ("t=\t\x7f\u2028", "t=%09%7F%E2%80%A8"),
    ],
    ids=["unicode", "unicode-beside-encoded", "raw-crlf", "controls"],
)
def test_in_the_raw_query_only_what_a_header_cannot_carry_is_percent_encoded(raw: str, expected: str) -> None:
    """Non-ASCII, spaces and control characters get their UTF-8 percent-encoding, the form a
    browser would have sent; a raw CR LF cannot end the Location header."""
    assert _location(_raw_event(raw, uri="/notes/café")) == f"https://{NEW}/notes/caf%C3%A9?{expected}"


@pytest.mark.parametrize("method", SAFE_METHODS + UNSAFE_METHODS)
@pytest.mark.parametrize("raw", ["a=&b&&a=1", "", None])
def test_every_method_keeps_the_raw_query(method: str, raw: str | None) -> None:
    answer = _run(_raw_event(raw, method=method, uri="/patients/1/screen"))
    assert answer["statusCode"] == (301 if method in SAFE_METHODS else 308)
    expected = f"https://{NEW}/patients/1/screen" + ("" if raw is None else f"?{raw}")
    assert answer["headers"]["location"] == {"value": expected}


@pytest.mark.parametrize("raw", ["a=&b", "", None])
@pytest.mark.parametrize("host", [NEW, "elsewhere.example"])
def test_with_the_raw_query_any_other_host_passes_through_untouched(host: str, raw: str | None) -> None:
    event = _raw_event(raw, host=host, method="POST")
    assert _run(event) == event["request"]


# ------------------------------------------------------------------ the fallback: path and query kept


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
    """Without rawQueryString(): keys and values go out as the object holds them, still
    percent-encoded: nothing is decoded, nothing is encoded twice."""
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
