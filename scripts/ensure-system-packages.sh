#!/usr/bin/env bash
# Make sure the system packages named as arguments (Debian package names) are
# installed: install them with apt-get when running as root, otherwise say how.
# Each argument is one of:
#   PACKAGE           installed when its command PACKAGE is missing
#   PACKAGE:COMMAND   installed when COMMAND is missing
#   PACKAGE:/PATH     installed when the file PATH is missing
#   PACKAGE=VERSION   installed at exactly VERSION (dpkg-query says which one is
#                     installed); another version is replaced, even by an older one
# The Makefile's system-packages passes the pins of infra/nginx/debian-packages.txt
# as PACKAGE=VERSION: the tests run the NGINX build the fleet installs.
set -euo pipefail

missing=()
wrong=()
for spec in "$@"; do
    if [[ $spec == *=* ]]; then
        package=${spec%%=*}
        version=${spec#*=}
        installed=$(dpkg-query -W -f='${db:Status-Abbrev} ${Version}' "$package" 2>/dev/null || true)
        if [ "$installed" != "ii  $version" ]; then
            missing+=("$spec")
            [[ $installed != 'ii  '* ]] || wrong+=("$package ${installed##* } (wanted $version)")
        fi
        continue
    fi
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
    apt-get install -y -qq --no-install-recommends --allow-downgrades "${missing[@]}" >/dev/null
    exit 0
fi
for line in "${wrong[@]}"; do
    echo "Installed at another version: $line." >&2
done
echo "Missing system packages: ${missing[*]}." >&2
echo "Install them, e.g. 'sudo apt-get install --allow-downgrades ${missing[*]}', then run make again." >&2
exit 1
