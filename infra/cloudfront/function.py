"""The old-domain redirect (redirect.js) with a stage's names filled in.

redirect.js holds two lines the deploy rewrites, each a JSON value on one line
with nothing else on it:

    var OLD_HOSTS = ["hosp.old.example"];
    var NEW_HOST = "hosp.new.example";

`with_names` replaces the value of each, written as JSON so that any name is
quoted correctly, and leaves every other byte of the file as it is. The deploy
publishes the result as the stage's CloudFront Function (infra/deploy.py), the
local edge imports it into njs (local/edge), and the tests run it in node
(tests/infra/test_cloudfront_redirect.py): the three run the same text.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from chalicelib import constants

REDIRECT_FUNCTION = Path(__file__).resolve().parent / "redirect.js"
RUNTIME = "cloudfront-js-2.0"
MAX_CODE_BYTES = 10 * 1024  # CloudFront Functions' limit on a function's code


class FunctionSourceError(ValueError):
    """redirect.js does not have the shape the deploy relies on, or the names do not fit it."""


def with_names(old_hosts: list[str], new_host: str, path: Path = REDIRECT_FUNCTION) -> str:
    """redirect.js with OLD_HOSTS and NEW_HOST replaced; raises FunctionSourceError."""
    source = path.read_text(encoding="utf-8")
    names: dict[str, list[str] | str] = {"OLD_HOSTS": old_hosts, "NEW_HOST": new_host}
    for name, value in names.items():
        line = f"var {name} = {json.dumps(value)};"
        # A replacement template: its backslashes doubled so that they stay literal.
        source, count = re.subn(rf"^var {name} = .*;$", line.replace("\\", "\\\\"), source, flags=re.M)
        if count != 1:
            raise FunctionSourceError(f"{path} must have exactly one `var {name} = ...;` line, found {count}")
    if not re.search(r"^function handler\(event\)", source, flags=re.M):
        raise FunctionSourceError(f"{path} defines no top-level function handler(event)")
    if len(source.encode("utf-8")) > MAX_CODE_BYTES:
        raise FunctionSourceError(f"{path} with these names is over CloudFront Functions' {MAX_CODE_BYTES} bytes")
    return source


def function_name(stage: str) -> str:
    """The stage's CloudFront Function (names are account-wide, like the distribution's)."""
    return constants.stack(stage, "old-domain-redirect")
