"""docs/access-log.md documents exactly the access log's schema (chalicelib.audit.log_schema), types included."""

from __future__ import annotations

import re

from chalicelib.audit.log_schema import FIELDS, NAMES
from local.processes import ROOT

# A row of the field table: | `name` | type | example | meaning |
FIELD_ROW = re.compile(r"^\| `(?P<name>\w+)` \| (?P<type>[^|]*?) \|", re.MULTILINE)


def documented_fields() -> dict[str, str]:
    """Each field the docs' table lists, with its `type` column."""
    text = (ROOT / "docs" / "access-log.md").read_text()
    rows = [(m.group("name"), m.group("type").strip()) for m in FIELD_ROW.finditer(text)]
    names = [name for name, _ in rows]
    assert len(names) == len(set(names)), f"a field is documented twice: {names}"
    return dict(rows)


def test_the_docs_list_exactly_the_schemas_fields() -> None:
    assert sorted(documented_fields()) == sorted(NAMES)


def test_the_docs_give_each_field_the_schemas_json_type() -> None:
    documented = documented_fields()

    assert {field.name: documented.get(field.name) for field in FIELDS} == {
        field.name: field.type.json for field in FIELDS
    }


def test_the_docs_list_the_fields_in_the_schemas_order() -> None:
    assert list(documented_fields()) == list(NAMES)


def test_the_docs_mark_exactly_the_client_text_fields() -> None:
    text = (ROOT / "docs" / "access-log.md").read_text()
    marked = set(re.findall(r"^\| `(\w+)` \| [^|]* \| [^|]* \| \*client text\*", text, re.MULTILINE))

    assert marked == {field.name for field in FIELDS if field.client_text}


def test_the_docs_mark_exactly_the_patient_id_fields() -> None:
    text = (ROOT / "docs" / "access-log.md").read_text()
    marked = set(re.findall(r"^\| `(\w+)` \| [^|]* \| [^|]* \| \*patient ids\*", text, re.MULTILINE))

    assert marked == {field.name for field in FIELDS if field.patient_ids}
