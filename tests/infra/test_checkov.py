"""How checkov is run on the templates, and where its skips live.

The scan itself (one checkov run over every template under infra/ and each stage's
`chalice package` output) is in test_chalice_package.py, which packages the stages once.
Here: that run covers every CloudFormation template of the repository; a skipped check
lives in one place only, the resource's own Metadata, next to what it excuses,
with its written reason; and checkov does fail what it should, so a green scan means
something.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from infra.app import package
from tests.infra.cfn import INFRA, REPO, cfn_templates, decode

MERGE_TEMPLATE = package.MERGE_TEMPLATE
MIN_REASON = package.MIN_SKIP_REASON
# checkov's inline form in a YAML comment: checkov:skip=CKV_AWS_1:the reason
_INLINE_SKIP = re.compile(r"checkov:skip=([A-Z0-9_]+)(?::(.*))?")


def skips_without_reason(template: dict[str, Any]) -> list[str]:
    """The resources' Metadata skips (checkov: skip: [{id, comment}]) that give no reason."""
    found = []
    for name, resource in template.get("Resources", {}).items():
        skips = resource.get("Metadata", {}).get("checkov", {}).get("skip", [])
        for skip in skips:
            if not re.fullmatch(r"CKV2?_[A-Z0-9]+_[0-9]+", str(skip.get("id", ""))):
                found.append(f"{name}: a skip without a check id: {skip}")
            elif len(str(skip.get("comment", "")).strip()) < MIN_REASON:
                found.append(f"{name}: {skip['id']} is skipped without a reason")
    return found


def inline_skips_without_reason(text: str) -> list[str]:
    return [m.group(0) for m in _INLINE_SKIP.finditer(text) if len((m.group(2) or "").strip()) < MIN_REASON]


def test_every_cloudformation_template_is_scanned() -> None:
    """Any file under infra/ that declares a template format version, YAML or JSON, is in
    the list the checkov run and cfn-lint cover."""
    candidates = [*INFRA.rglob("*.yaml"), *INFRA.rglob("*.yml"), *INFRA.rglob("*.json")]
    declared = {p for p in candidates if "AWSTemplateFormatVersion" in p.read_text(encoding="utf-8")}
    assert declared
    assert declared <= set(cfn_templates()), sorted(str(p) for p in declared - set(cfn_templates()))


def test_skips_live_only_next_to_the_resources() -> None:
    """No checkov config file (a skip there would apply to every resource of every
    template, far from what it excuses)."""
    configs = [p for name in (".checkov.yaml", ".checkov.yml") for p in REPO.rglob(name) if ".venv" not in p.parts]
    assert configs == []


@pytest.mark.parametrize("path", [*cfn_templates(), MERGE_TEMPLATE], ids=lambda p: str(Path(p).relative_to(REPO)))
def test_every_skip_has_a_written_reason(path: Path) -> None:
    template = json.loads(path.read_text()) if path.suffix == ".json" else decode(path)
    assert skips_without_reason(template) == []
    assert inline_skips_without_reason(path.read_text(encoding="utf-8")) == []


def test_a_skip_without_a_reason_is_found() -> None:
    """Guards the test above against a checker that finds nothing."""
    template = {
        "Resources": {
            "Bucket": {"Metadata": {"checkov": {"skip": [{"id": "CKV_AWS_18"}, {"id": "CKV_AWS_21", "comment": "x"}]}}},
            "Queue": {
                "Metadata": {"checkov": {"skip": [{"id": "CKV_AWS_27", "comment": "SSE-SQS encrypts it at rest."}]}}
            },
        }
    }
    assert skips_without_reason(template) == [
        "Bucket: CKV_AWS_18 is skipped without a reason",
        "Bucket: CKV_AWS_21 is skipped without a reason",
    ]
    assert inline_skips_without_reason("# checkov:skip=CKV_AWS_18\n# checkov:skip=CKV_AWS_21:logs of logs\n") == [
        "checkov:skip=CKV_AWS_18",
        "checkov:skip=CKV_AWS_21:logs of logs",
    ]


def test_checkov_fails_an_unsafe_template_and_honours_a_reasoned_skip(tmp_path: Path) -> None:
    """checkov runs offline from its own environment, fails what it should, and reads
    Metadata skips with their reasons: a green scan is not a scanner that checked nothing."""
    if not package.CHECKOV.exists():
        pytest.fail(package.MISSING_CHECKOV, pytrace=False)
    reason = "A stand-in reason, long enough to count as one."
    template = tmp_path / "unsafe.json"
    template.write_text(
        json.dumps(
            {
                "AWSTemplateFormatVersion": "2010-09-09",
                "Resources": {
                    "Queue": {"Type": "AWS::SQS::Queue", "Properties": {"SqsManagedSseEnabled": False}},
                    "Group": {
                        "Type": "AWS::Logs::LogGroup",
                        "Metadata": {"checkov": {"skip": [{"id": "CKV_AWS_158", "comment": reason}]}},
                        "Properties": {"RetentionInDays": 7},
                    },
                },
            }
        )
    )
    (report,) = package.scan([template], cwd=tmp_path)
    failed = {(c["resource"], c["check_id"]) for c in report["results"]["failed_checks"]}
    assert ("AWS::SQS::Queue.Queue", "CKV_AWS_27") in failed
    skipped = {(c["check_id"], c["check_result"]["suppress_comment"]) for c in report["results"]["skipped_checks"]}
    assert skipped == {("CKV_AWS_158", reason)}
    assert any("CKV_AWS_27 AWS::SQS::Queue.Queue" in p for p in package.scan_problems([report]))


def test_a_scan_fails_on_what_checkov_lets_pass() -> None:
    """checkov exits 0 on a file it cannot parse and records a skip without a comment as
    readily as one with: `make package` and the tests fail on both."""
    report: dict[str, Any] = {
        "summary": {"passed": 0, "failed": 0, "skipped": 1, "parsing_errors": 1},
        "results": {
            "failed_checks": [],
            "skipped_checks": [
                {"check_id": "CKV_AWS_18", "resource": "AWS::S3::Bucket.B", "file_path": "/t.yaml", "check_result": {}}
            ],
        },
    }
    empty: dict[str, Any] = {
        "summary": {"passed": 0, "failed": 0, "skipped": 0, "parsing_errors": 0},
        "results": {"failed_checks": [], "skipped_checks": []},
    }
    assert package.scan_problems([report, empty]) == [
        "checkov could not parse 1 file(s)",
        "CKV_AWS_18 AWS::S3::Bucket.B (/t.yaml) is skipped without a reason",
        "checkov checked nothing",
    ]
