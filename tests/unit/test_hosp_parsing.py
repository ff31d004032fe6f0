"""The stand-in's strict parsers of client input: numbers, chunk sizes, JSON, base64, blanks."""

from __future__ import annotations

import pytest

from local.hosp_standin.parsing import (
    NUMBER_CAP,
    BadJson,
    chunk_size,
    decimal,
    is_base64,
    is_blank,
    json_value,
)


@pytest.mark.parametrize(("text", "value"), [("0", 0), ("7", 7), ("007", 7), ("16777216", 16777216)])
def test_ascii_digits_are_decimal_numbers(text: str, value: int) -> None:
    assert decimal(text) == value


@pytest.mark.parametrize("text", ["", " 5", "5 ", "+5", "-5", "5_0", "0x5", "5.0", "\u00b2", "\u0663", "\uff15"])
def test_anything_but_ascii_digits_is_no_decimal_number(text: str) -> None:
    assert decimal(text) is None


def test_numbers_too_long_for_int_are_capped_instead_of_raising() -> None:
    assert decimal("9" * 5000) == NUMBER_CAP
    assert chunk_size(b"f" * 5000) == NUMBER_CAP
    assert decimal("0" * 5000 + "12") == 12


@pytest.mark.parametrize(("text", "value"), [(b"0", 0), (b"a", 10), (b"A", 10), (b"1F", 31), (b"0010", 16)])
def test_hex_digits_are_chunk_sizes(text: bytes, value: int) -> None:
    assert chunk_size(text) == value


@pytest.mark.parametrize("text", [b"", b" 5", b"5 ", b"+5", b"-0", b"0_2", b"0x5", b"g", b"\xb2"])
def test_anything_but_hex_digits_is_no_chunk_size(text: bytes) -> None:
    assert chunk_size(text) is None


def test_json_values_parse_as_json_loads_would() -> None:
    assert json_value(b'{"a": [1, 2.5, "x", null, true]}') == {"a": [1, 2.5, "x", None, True]}
    assert json_value('{"seed": 3}') == {"seed": 3}


@pytest.mark.parametrize("body", [b"[" * 100_000 + b"]" * 100_000, b'{"a":' * 100_000, b"[" * 100_000])
def test_deep_nesting_is_refused_without_recursing(body: bytes) -> None:
    with pytest.raises(BadJson, match=r"^nested too deeply$"):
        json_value(body)


@pytest.mark.parametrize("body", [b"", b"{title", b"[1,]", b"\xff", b'"\\ud800"'])
def test_invalid_json_is_refused_with_the_parsers_reason(body: bytes) -> None:
    with pytest.raises(BadJson, match=r"^not valid JSON: "):
        json_value(body)


@pytest.mark.parametrize("text", ["aGk=", "aGVsbG8=", "aGVsbA==", "AAAA", "+/+/"])
def test_padded_standard_base64_is_an_image(text: str) -> None:
    assert is_base64(text)


@pytest.mark.parametrize("text", ["", "aGk", "aGk==", "aGk=\n", "a===", "====", "aG=k", "aGk-", "aGk_"])
def test_anything_else_is_not(text: str) -> None:
    assert not is_base64(text)


@pytest.mark.parametrize("text", ["", " ", "\t\r\n", "\u00a0", "\u3000 \u2028"])
def test_white_space_only_is_blank_as_in_rails(text: str) -> None:
    assert is_blank(text)


@pytest.mark.parametrize("text", ["a", " a ", "\x1f", "\x1c", "0"])
def test_anything_with_another_character_is_not_blank(text: str) -> None:
    # Python's str.isspace() counts \x1c-\x1f as space; Rails' blank? does not.
    assert not is_blank(text)
