"""Check an OpenPGP public key's fingerprint and write it as a keyring for gpgv.

    openpgp_keyring.py --fingerprint HEX KEY_FILE KEYRING

install.sh verifies the CloudWatch agent's package with gpgv, which Debian always has
(apt needs it) but which trusts every key of the keyring it is given and cannot show a
fingerprint. So this reads the key AWS publishes (ASCII armored or binary), computes the
fingerprint of its primary key (RFC 4880, 12.2: SHA-1 over 0x99, the packet's two-byte
length and the public key packet's body), refuses the key unless it is the expected one,
and only then writes it, binary and without any other key the file may hold, as gpgv's
keyring. Standard library only.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import sys
from pathlib import Path

PUBLIC_KEY_TAG = 6


def dearmor(data: bytes) -> bytes:
    """The binary packets of an ASCII-armored block (its checksum line left out), or data as is."""
    if not data.lstrip().startswith(b"-----BEGIN PGP PUBLIC KEY BLOCK-----"):
        return data
    lines = data.decode("ascii").strip().splitlines()
    body = lines[1 : lines.index(next(line for line in lines if line.startswith("-----END ")))]
    # Armor headers ("Version: ...") end at the first empty line.
    if "" in body:
        body = body[body.index("") + 1 :]
    return base64.b64decode("".join(line for line in body if not line.startswith("=")))


def first_packet(data: bytes) -> tuple[int, bytes, int]:
    """(tag, body, total length) of the first OpenPGP packet of data."""
    if not data or not data[0] & 0x80:
        raise ValueError("not an OpenPGP packet")
    header = data[0]
    if header & 0x40:  # new format
        tag, first = header & 0x3F, data[1]
        if first < 192:
            length, start = first, 2
        elif first < 224:
            length, start = ((first - 192) << 8) + data[2] + 192, 3
        elif first == 255:
            length, start = int.from_bytes(data[2:6], "big"), 6
        else:
            raise ValueError("a partial-length public key packet")
    else:  # old format
        tag, kind = (header >> 2) & 0x0F, header & 0x03
        if kind == 3:
            raise ValueError("a public key packet of indeterminate length")
        size = 1 << kind
        length, start = int.from_bytes(data[1 : 1 + size], "big"), 1 + size
    body = data[start : start + length]
    if len(body) != length:
        raise ValueError("a truncated packet")
    return tag, body, start + length


def primary_key(data: bytes) -> bytes:
    """The first key of data with its own packets (user ids, signatures, subkeys), and no
    key after it: gpgv would trust any key of its keyring."""
    tag, _, end = first_packet(data)
    while end < len(data):
        tag, _, length = first_packet(data[end:])
        if tag == PUBLIC_KEY_TAG:
            break
        end += length
    return data[:end]


def fingerprint(key: bytes) -> str:
    """The v4 fingerprint (40 hex digits, upper case) of the key's primary key."""
    tag, body, _ = first_packet(key)
    if tag != PUBLIC_KEY_TAG or not body or body[0] != 4:
        raise ValueError("the key does not start with a version 4 public key packet")
    return hashlib.sha1(b"\x99" + len(body).to_bytes(2, "big") + body, usedforsecurity=False).hexdigest().upper()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fingerprint", required=True, help="the expected fingerprint (hex, spaces allowed)")
    parser.add_argument("key", type=Path, help="the public key file, armored or binary")
    parser.add_argument("keyring", type=Path, help="the keyring to write for gpgv --keyring")
    args = parser.parse_args(argv)
    expected = args.fingerprint.replace(" ", "").upper()
    try:
        key = primary_key(dearmor(args.key.read_bytes()))
        found = fingerprint(key)
    except (OSError, ValueError, IndexError, StopIteration) as exc:
        print(f"openpgp_keyring: {args.key}: {exc}", file=sys.stderr)
        return 1
    if found != expected:
        print(f"openpgp_keyring: {args.key} is key {found}, not {expected}", file=sys.stderr)
        return 1
    args.keyring.write_bytes(key)
    return 0


if __name__ == "__main__":
    sys.exit(main())
