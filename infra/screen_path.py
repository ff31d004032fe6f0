"""The proxy's screen-path map entries, from chalicelib/screen_path.py.

chalicelib/screen_path.py holds the one definition of an X-ray screen's path;
the audit trail reads it there, and NGINX from the template this module writes
(infra/nginx/templates/screen-paths.conf, included by screen-policy.conf's
$hosp_screen map). The template ships in the proxy's bundle, which holds no
chalicelib, so it is generated and checked in, as the Glue table's columns are:

    python -m infra.screen_path            # rewrite the template
    python -m infra.screen_path --check    # exit 1 if it differs from the definition
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from chalicelib import screen_path

TEMPLATE = Path(__file__).resolve().parent / "nginx" / "templates" / "screen-paths.conf"
COMMAND = "python -m infra.screen_path"
# The map's key (screen-policy.conf): listener, method and normalized path.
KEY_PREFIX = "public:POST:"


def render() -> str:
    """The template's text: the map entries for a patient's screen and for one whose id is not digits."""
    patient = screen_path.pattern(f"(?<screen_patient>{screen_path.SCREEN_ID})", KEY_PREFIX)
    not_a_patient = screen_path.pattern("[^/]*", KEY_PREFIX)
    return (
        f"# Generated from chalicelib/screen_path.py by `{COMMAND}`: do not edit (a test\n"
        "# checks that it is current). Entries of screen-policy.conf's $hosp_screen map:\n"
        "# a public POST to a screen's path, whose id is ASCII digits or is not.\n"
        f'"~{patient}"  patient;\n'
        f'"~{not_a_patient}"  not-a-patient;\n'
    )


def is_current(path: Path = TEMPLATE) -> bool:
    return path.is_file() and path.read_text(encoding="utf-8") == render()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=COMMAND, description=f"Write (or check) {TEMPLATE.name} from chalicelib/screen_path.py."
    )
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if the template differs")
    parser.add_argument("--template", type=Path, default=TEMPLATE, help="default: %(default)s")
    args = parser.parse_args(argv)
    path: Path = args.template
    if args.check:
        if not is_current(path):
            print(f"{path}: differs from chalicelib/screen_path.py; run {COMMAND}", file=sys.stderr)
            return 1
        return 0
    if not is_current(path):
        path.write_text(render(), encoding="utf-8")
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
