"""The note worker names the nurse it writes for, in a header the proxy logs (docs/audit.md)."""

from __future__ import annotations

import pytest

from chalicelib.note_worker import on_behalf_of_header


@pytest.mark.parametrize(
    ("nurse", "header"),
    [("nurse-joy", b"nurse-joy"), ("Zo\u00eb", "Zo\u00eb".encode()), ("DOMAIN\\joy", b"DOMAIN\\joy")],
)
def test_the_nurse_is_sent_as_her_utf8_name(nurse: str, header: bytes) -> None:
    assert on_behalf_of_header(nurse) == header


@pytest.mark.parametrize("nurse", ["", "joy\r\nX-Admin: 1", "joy\x00", "joy\x7f"])
def test_no_name_or_one_no_header_may_carry_sends_nothing(nurse: str) -> None:
    assert on_behalf_of_header(nurse) is None
