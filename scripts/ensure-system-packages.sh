#!/usr/bin/env bash
# Make sure the system packages named as arguments (Debian package names) are
# installed: install them with apt-get when running as root, otherwise say how.
# Each argument is PACKAGE, or PACKAGE:COMMAND when the command differs, or
# PACKAGE:/PATH for a package that installs a file rather than a command.
set -euo pipefail

missing=()
for spec in "$@"; do
    package=${spec%%:*}
    command=${spec#*:}
    if [[ $command == /* ]]; then
        [ -e "$command" ] || missing+=("$package")
    elif ! PATH="$PATH:/usr/sbin:/usr/local/sbin" command -v "$command" >/dev/null 2>&1; then
        missing+=("$package")
    fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "Installing ${missing[*]} with apt-get ..."
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    exit 0
fi
echo "Missing system packages: ${missing[*]}." >&2
echo "Install them, e.g. 'sudo apt-get install ${missing[*]}', then run make again." >&2
exit 1
