"""The one definition of an X-ray screen's path, shared by the proxy and the audit trail.

The proxy takes a public POST whose path matches for a screen, whose 2xx JSON
answer it hands to the note intake (infra/nginx/templates/screen-paths.conf,
generated from this module by `python -m infra.screen_path`), and the audit
trail names the patient of a request whose path matches (trail.sql's
:screen_path, given by chalicelib/audit/filters.py). So every screen the proxy
hands off, and a note is made for, is its patient's in the trail.

The path is matched whole, as NGINX normalized it (percent-decoded, slashes
merged, dot segments resolved): /patients/{id}/screen with any format suffix
(.json, .JSON, .xml: HOSP answers them all as the screen) and an
optional trailing slash. The expressions use only what NGINX's PCRE, DuckDB's
RE2 and Athena's regular expressions read alike; \\z is the end of the text in
all three, where $ also matches before a final newline in some.
"""

from __future__ import annotations

# {id} stands for the pattern of the record id.
SCREEN_PATH = r"/patients/{id}/screen(?:\.[A-Za-z0-9]+)?/?"
# What the proxy sends on as a patient's screen: ASCII digits (docs/screen.md).
SCREEN_ID = "[0-9]+"


def pattern(id_pattern: str = SCREEN_ID, prefix: str = "") -> str:
    """The whole-path regular expression of a screen, `id_pattern` in the id's place, after `prefix`."""
    return "^" + prefix + SCREEN_PATH.replace("{id}", id_pattern) + r"\z"
