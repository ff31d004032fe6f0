"""The one shape of every error (docs/errors.md): chalicelib/errors.py, the proxy's templates, the docs."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

from chalicelib import errors

ROOT = Path(__file__).resolve().parents[2]
ERRORS_DOC = ROOT / "docs" / "errors.md"
TEMPLATES = ROOT / "infra" / "nginx" / "templates"


def test_an_error_is_its_message_status_and_request_id_then_its_extra_fields() -> None:
    built = json.loads(errors.encoded(400, "bad filter 'from'", "a" * 32, field="from", accepts="ISO 8601"))

    assert built == {
        "error": "bad filter 'from'",
        "status": 400,
        "request_id": "a" * 32,
        "field": "from",
        "accepts": "ISO 8601",
    }
    assert list(built)[:3] == list(errors.FIELDS)


def test_a_field_the_docs_do_not_name_is_refused() -> None:
    with pytest.raises(ValueError, match="status_code"):
        errors.body(500, "x", "a" * 32, status_code=500)


@pytest.mark.parametrize("status", [200, 202, 302, 399, 600])
def test_an_answer_that_is_not_an_error_is_refused(status: int) -> None:
    with pytest.raises(ValueError, match="4xx or 5xx"):
        errors.body(status, "x", "a" * 32)


def documented_fields(section: str) -> set[str]:
    """The first column of the table under `section` in docs/errors.md."""
    text = ERRORS_DOC.read_text(encoding="utf-8")
    part = text.split(section, 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([a-z_]+)` \|", part, re.MULTILINE))


def test_docs_errors_md_documents_exactly_the_fields_an_error_may_have() -> None:
    assert documented_fields("# Errors") == set(errors.FIELDS)
    assert documented_fields("## Extra fields") == errors.EXTRA_FIELDS


@pytest.mark.parametrize("doc", ["proxy.md", "screen.md", "audit.md"])
def test_the_docs_of_each_part_that_answers_errors_link_to_the_one_section(doc: str) -> None:
    assert "(errors.md)" in (ROOT / "docs" / doc).read_text(encoding="utf-8")


def test_every_error_nginx_writes_has_the_three_fields_in_order() -> None:
    written = [
        match
        for template in TEMPLATES.rglob("*.conf")
        for match in re.findall(r"return \d+ '(\{\"error\".*?)\\n';", template.read_text(encoding="utf-8"))
    ]

    assert len(written) >= 3  # the error page, the retry budget's 503, a screen path's 404
    for body in written:
        keys = re.findall(r'"([a-z_]+)":', body)
        assert keys == list(errors.FIELDS), body
        assert '"request_id":"$hosp_request_id"' in body, body


def test_no_chalicelib_module_builds_an_error_body_of_its_own() -> None:
    """An "error" key or a JSON text with one, anywhere but chalicelib/errors.py: a second shape."""
    found = []
    for module in (ROOT / "chalicelib").rglob("*.py"):
        if module.name == "errors.py" and module.parent.name == "chalicelib":
            continue
        for node in ast.walk(ast.parse(module.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Dict):
                if any(isinstance(k, ast.Constant) and k.value in ("error", "status_code") for k in node.keys):
                    found.append(f"{module.relative_to(ROOT)}:{node.lineno}")
            elif isinstance(node, ast.Constant) and isinstance(node.value, str | bytes):
                text = node.value if isinstance(node.value, str) else node.value.decode("latin-1")
                if '"error"' in text:
                    found.append(f"{module.relative_to(ROOT)}:{node.lineno}")

    assert found == []
