#!/usr/bin/env bash
# ----------------------------------------------------------------------
# | Follow CloudFront's origin secret: Secrets Manager -> NGINX        |
# ----------------------------------------------------------------------
#
#   origin-secret-refresh.sh [--force] [RENDER_PY_OPTION...]
#
# Reads the secret ORIGIN_SECRET_ARN (proxy.env), whose value is JSON
# {"current": "...", "previous": "..."} ("previous" is empty outside a
# rotation), with the AWS CLI and the instance role. When the values differ
# from ORIGIN_SECRET_FILE (or with --force, which install.sh uses), it
# renders NGINX's config from them through render-nginx.sh (which runs
# nginx -t), reloads NGINX if it runs, and only then replaces
# ORIGIN_SECRET_FILE: one value a line, the current one first, mode 0600,
# by an atomic rename. If any step fails the running NGINX keeps its config,
# ORIGIN_SECRET_FILE keeps the old values (so the next run tries again), and
# the script exits non-zero, which fails hosp-proxy-origin-secret.service.
# Other options go to render-nginx.sh.
#
# The values never appear in a command line, an environment variable, the
# output or a message: they go from the AWS CLI to python3 through a pipe,
# and from python3 to a file only root can read.
set -euo pipefail
umask 077

force=false
if [ "${1:-}" = --force ]; then
    force=true
    shift
fi

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=proxy-env.sh
. "$here/proxy-env.sh"
load_proxy_env

# SecretString JSON on stdin -> the lines of ORIGIN_SECRET_FILE in the file
# named by argv[1]. Its messages never quote the input. render.py checks the
# values' alphabet and length when it renders.
to_lines='
import json, sys

try:
    secret = json.load(sys.stdin)
except ValueError:
    sys.exit("origin-secret-refresh.sh: the secret is not JSON")
if not isinstance(secret, dict):
    sys.exit("origin-secret-refresh.sh: the secret is not a JSON object")
current, previous = secret.get("current"), secret.get("previous") or ""
if not isinstance(current, str) or not current:
    sys.exit("origin-secret-refresh.sh: the secret has no \"current\" value")
if not isinstance(previous, str):
    sys.exit("origin-secret-refresh.sh: the secret'"'"'s \"previous\" is not a string")
values = [current] + ([previous] if previous and previous != current else [])
if any(value != value.strip() or not value.isprintable() for value in values):
    sys.exit("origin-secret-refresh.sh: a value of the secret has spaces or control characters")
with open(sys.argv[1], "w", encoding="utf-8") as file:
    file.write("".join(value + "\n" for value in values))
'

# Beside ORIGIN_SECRET_FILE, so that the final rename is atomic.
candidate=$(mktemp "$ORIGIN_SECRET_FILE.XXXXXX")
trap 'rm -f "$candidate"' EXIT
aws secretsmanager get-secret-value --secret-id "$ORIGIN_SECRET_ARN" \
    --query SecretString --output text |
    python3 -c "$to_lines" "$candidate"

if [ "$force" = false ] && [ -f "$ORIGIN_SECRET_FILE" ] && cmp -s "$candidate" "$ORIGIN_SECRET_FILE"; then
    exit 0 # unchanged: nothing to do, and nothing in the journal every 5 minutes
fi

"$here/render-nginx.sh" "$@" --origin-secret-file "$candidate"
if systemctl is-active --quiet nginx.service; then
    systemctl reload nginx.service
    reloaded='NGINX reloaded'
else
    reloaded='NGINX not running, not reloaded'
fi
mv -f "$candidate" "$ORIGIN_SECRET_FILE"
echo "origin-secret-refresh.sh: $(wc -l <"$ORIGIN_SECRET_FILE") accepted value(s) in $NGINX_CONF; $reloaded"
