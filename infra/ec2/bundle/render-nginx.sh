#!/usr/bin/env bash
# ----------------------------------------------------------------------
# | Render NGINX's config from proxy.env, test it, then put it in place |
# ----------------------------------------------------------------------
#
#   render-nginx.sh [RENDER_PY_OPTION...]
#
# The one place that turns the instance's settings (proxy.env, see
# proxy-env.sh) into infra/nginx/render.py's options; install.sh and
# origin-secret-refresh.sh both render through it. It writes a candidate
# beside NGINX_CONF, runs `nginx -t` on it, and only then renames it over
# NGINX_CONF (same directory: the rename is atomic). A config that render.py
# or nginx -t refuses never replaces the one in place, and the script exits
# non-zero. It does not reload NGINX: its caller does, when NGINX runs.
#
# Options given to this script go to render.py after those from proxy.env,
# so they win: origin-secret-refresh.sh renders from its candidate secret
# file, and the tests point the log and module paths at a temporary
# directory.
#
# The config holds the origin secrets, so render.py writes it readable by its
# owner only (root; NGINX's master reads it, its workers do not).
set -euo pipefail
umask 077

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=proxy-env.sh
. "$here/proxy-env.sh"
load_proxy_env

# The bundle keeps the repository's layout: infra/ec2/bundle/ beside infra/nginx/.
render_py=$here/../../nginx/render.py

# Production variant: listens on PUBLIC_LISTEN (80: public, behind the origin
# load balancer; origin-secret-refresh.sh asks it on loopback after a reload)
# and 8081 (internal, the Lambdas'), logs under /var/log/hosp-proxy/, and its
# workers run as the user of Debian's nginx package (www-data).
options=(
    --variant production
    --upstream "$HOSP_UPSTREAM"
    --listen "$PUBLIC_LISTEN"
    --interceptor "$INTERCEPTOR_HOST:443"
    --user www-data
    --origin-secret-file "$ORIGIN_SECRET_FILE"
)
# The Host names production answers; the first is the new domain.
IFS=, read -r -a public_names <<<"$PUBLIC_NAMES"
for name in "${public_names[@]}"; do
    options+=(--public-name "$name")
done

candidate=$(mktemp "$NGINX_CONF.XXXXXX")
trap 'rm -f "$candidate"' EXIT
python3 "$render_py" "${options[@]}" "$@" --output "$candidate" >/dev/null
if ! nginx -t -q -c "$candidate"; then
    echo "render-nginx.sh: nginx -t refused the new config; $NGINX_CONF is unchanged" >&2
    exit 1
fi
mv -f "$candidate" "$NGINX_CONF"
