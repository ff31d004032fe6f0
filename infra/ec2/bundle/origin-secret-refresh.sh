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
# nginx -t) and, if NGINX runs, reloads it and checks that the running NGINX
# took them; only then it replaces ORIGIN_SECRET_FILE: one value a line, the
# current one first, mode 0600, by an atomic rename. ORIGIN_SECRET_FILE thus
# records the values the running NGINX answers to, and the next run compares
# the secret against it.
#
# The check: `systemctl reload nginx.service` only sends the master a HUP and
# returns 0 at once, whether the master then loads the new config or refuses
# it (it logs why and keeps the old one). So for up to 10 s the script asks
# the public listener itself (127.0.0.1, PUBLIC_LISTEN's port), as
# CloudFront would ask it but with a method the API does not use, PROPFIND,
# and the first public name as Host: the proxy answers that itself, without
# reaching HOSP or the app. Each value of the new file must get the proxy's
# 405 (the origin header accepted, docs/proxy.md: 403 comes before the host
# and method checks), and each value of the old file that the new one drops
# must get 403. Not TRACE: NGINX answers TRACE 405 before reading the
# config's checks.
#
# If any step fails, ORIGIN_SECRET_FILE keeps the old values (so the next run
# renders and reloads again), and the script exits non-zero, which fails
# hosp-proxy-origin-secret.service. A config that render.py or nginx -t
# refuses never replaces NGINX_CONF, and the running NGINX keeps its config;
# after a reload that did not take, NGINX_CONF already holds the new config
# (the one NGINX loads at its next start or reload) while the running NGINX
# keeps the old one. Other options go to render-nginx.sh.
#
# The values never appear in a command line, an environment variable, the
# output or a message: they go from the AWS CLI to python3 through a pipe,
# from python3 to a file only root can read, and the check's python3 reads
# them from that file and sends them to loopback only.
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

# After a reload: whether the running NGINX answers as the new values say
# (the header comment says how it asks). argv: the new file, the old one
# (it may not exist), the public listener's port, and the Host to send.
# Polls for about 10 s at most (the master takes a moment to reload); exits
# non-zero with a message that names no value.
check_running='
import http.client, sys, time

new_file, old_file, port, host = sys.argv[1:]

def read(path):
    try:
        with open(path, encoding="utf-8") as file:
            return [line.strip() for line in file if line.strip()]
    except FileNotFoundError:
        return []

new = read(new_file)
# (the value as messages name it, the value, the status expected)
expected = [("the current value", new[0], 405)] + [("the previous value", value, 405) for value in new[1:]]
expected += [("a value no longer in the secret", value, 403) for value in read(old_file) if value not in new]

def answer(value):
    connection = http.client.HTTPConnection("127.0.0.1", int(port), timeout=1)
    try:
        headers = {"Host": host, "X-Origin-Verify": value, "User-Agent": "hosp-proxy-origin-secret-refresh"}
        connection.request("PROPFIND", "/", headers=headers)
        return str(connection.getresponse().status)
    except (OSError, http.client.HTTPException) as error:
        return type(error).__name__
    finally:
        connection.close()

deadline = time.monotonic() + 10
while True:
    wrong = [(name, want, got) for name, value, want in expected if (got := answer(value)) != str(want)]
    if not wrong:
        sys.exit(0)
    if time.monotonic() >= deadline:
        break
    time.sleep(0.25)
answers = "; ".join(f"{name}: {got}, not {want}" for name, want, got in wrong)
sys.exit(
    f"origin-secret-refresh.sh: 10 s after the reload, NGINX on 127.0.0.1:{port} still does not answer as the "
    f"new values say ({answers}): it has not taken the new config (its error log says why); {old_file} is "
    "unchanged, and the next run renders and reloads again"
)
'

# The public listener's port: PUBLIC_LISTEN (render.py --listen) is a port
# (every address, production's 80) or 127.0.0.1:PORT; the check asks it on
# 127.0.0.1 either way.
if [[ ! $PUBLIC_LISTEN =~ ^(127\.0\.0\.1:)?[0-9]{1,5}$ ]]; then
    echo "origin-secret-refresh.sh: PUBLIC_LISTEN is neither a port nor 127.0.0.1:PORT: '$PUBLIC_LISTEN'" >&2
    exit 2
fi
probe_port=${PUBLIC_LISTEN##*:}
probe_host=${PUBLIC_NAMES%%,*} # the first public name

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
    python3 -c "$check_running" "$candidate" "$ORIGIN_SECRET_FILE" "$probe_port" "$probe_host"
    reloaded='NGINX reloaded and answering with them'
else
    reloaded='NGINX not running, not reloaded'
fi
mv -f "$candidate" "$ORIGIN_SECRET_FILE"
echo "origin-secret-refresh.sh: $(wc -l <"$ORIGIN_SECRET_FILE") accepted value(s) in $NGINX_CONF; $reloaded"
