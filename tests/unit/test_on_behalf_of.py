"""The note worker names the nurse it writes for, in a header the proxy logs (docs/audit.md)."""

from __future__ import annotations

import pytest

from chalicelib.note_worker import on_behalf_of_header


@pytest.mark.parametrize(
    ("nurse", "header"),
    [
        ("nurse-joy", b"nurse-joy"),
        ("Zo\u00eb", "Zo\u00eb".encode()),
        # As the log writes them: a backslash doubled, a byte that is not UTF-8 as \xHH,
        # and a client's own text "\xff" (its backslash doubled).
        ("DOMAIN\\\\joy", b"DOMAIN\\joy"),
        ("joy\\xff", b"joy\xff"),
        ("joy\\\\xff", b"joy\\xff"),
        ("a b", b"a b"),
        ("joy\\\\...", b"joy\\..."),  # her own backslash and dots, not the cut marker
    ],
)
def test_the_nurse_is_sent_as_the_bytes_her_logged_name_stands_for(nurse: str, header: bytes) -> None:
    assert on_behalf_of_header(nurse) == header


@pytest.mark.parametrize(
    "nurse",
    [
        "",
        "joy\r\nX-Admin: 1",
        "joy\x00",
        "joy\x7f",
        "joy\\x0d\\x0aX-Admin: 1",  # a CR LF the log escaped
        "joy\\x7f",
        " joy",  # NGINX would strip the space: the header could not carry her name exactly
        "joy\t",
        "joy" * 700 + "\\...",  # cut at the log's bound: the rest of her name is not known
        "joy\\",  # no text the log writes
        "joy\ud800",  # nor this: a lone surrogate is no text
    ],
)
def test_no_name_or_one_no_header_may_carry_exactly_sends_nothing(nurse: str) -> None:
    assert on_behalf_of_header(nurse) is None
