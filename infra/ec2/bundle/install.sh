#!/usr/bin/env bash
# ----------------------------------------------------------------------
# | HOSP retry proxy: set up one fleet instance from this bundle       |
# ----------------------------------------------------------------------
#
# The launch template's user data (infra/ec2/proxy.yaml) unpacks the bundle
# (`make bundle`) into /opt/hosp-proxy and runs this script as root on
# Debian 12 (bookworm), with the stack's values in the environment:
#
#   AWS_DEFAULT_REGION  the stack's region
#   HOSP_UPSTREAM       host:port of HOSP's load balancer
#   INTERCEPTOR_HOST    host name of the Chalice API (NGINX calls it on 443)
#   PUBLIC_NAMES        comma list of the Host names the public listener
#                       answers; the first is the new domain
#   ORIGIN_SECRET_ARN   the Secrets Manager secret of CloudFront's origin
#                       header (the network stack's OriginSecretArn)
#   ACCESS_LOG_GROUP    CloudWatch Logs group of the JSON access log
#   ERROR_LOG_GROUP     CloudWatch Logs group of NGINX's error log
#   HANDOFF_LOG_GROUP   CloudWatch Logs group of the screens' failed hand-offs
#
# It installs the pinned NGINX packages and the CloudWatch agent, writes /etc/hosp-proxy/proxy.env (the settings
# every later step reads), fetches the origin secret and renders NGINX's
# config (origin-secret-refresh.sh -> render-nginx.sh, which runs nginx -t),
# installs the systemd units, logrotate and the CloudWatch agent's config,
# starts NGINX and the timers, and checks the health endpoint of both
# listeners. Every failure stops it with a non-zero status, which makes the
# user data signal failure to CloudFormation.
set -euo pipefail
umask 022

bundle=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd) # .../infra/ec2/bundle
root=$(cd "$bundle/../../.." && pwd)                 # where the bundle was unpacked

# --- the stack's values. Each goes into a config file, so each must be one
# plain word: nothing that a file format or a shell would read specially.
require() { # NAME PATTERN
    local name=$1 pattern=$2
    if [[ ! ${!name:-} =~ $pattern ]]; then
        echo "install.sh: $name is missing or malformed: '${!name:-}'" >&2
        exit 2
    fi
}
host='[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?'
require AWS_DEFAULT_REGION '^[a-z]{2}(-[a-z]+)+-[0-9]+$'
require HOSP_UPSTREAM "^$host:[0-9]{1,5}\$"
require INTERCEPTOR_HOST "^$host\$"
require PUBLIC_NAMES "^$host(,$host)*\$"
require ORIGIN_SECRET_ARN '^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:[A-Za-z0-9/_+=.@-]+$'
require ACCESS_LOG_GROUP '^[A-Za-z0-9_./#-]+$'
require ERROR_LOG_GROUP '^[A-Za-z0-9_./#-]+$'
require HANDOFF_LOG_GROUP '^[A-Za-z0-9_./#-]+$'

# --- packages: exactly the Debian versions the tests run, pinned in
# infra/nginx/debian-packages.txt (PACKAGE=VERSION lines, '#' comments), the
# one list the tests, `make` and this script read. From Debian's mirror, or
# from the bundle's packages/ when it carries them (`build_bundle.py
# --packages DIR`, checked there to hold each pin): apt checks no signature on
# a local .deb, so their sha256 must match the bundle's packages/SHA256SUMS,
# written when the bundle was built. --allow-downgrades: the pin wins over a
# newer version the AMI or the mirror has. Then `apt-mark hold` keeps
# unattended upgrades from moving them; a new pin comes with a new bundle.
export DEBIAN_FRONTEND=noninteractive
pins=()
while IFS= read -r line || [ -n "$line" ]; do
    line=${line%%#*}
    line=${line//[[:space:]]/}
    [ -z "$line" ] || pins+=("$line")
done <"$root/infra/nginx/debian-packages.txt"
[ ${#pins[@]} -gt 0 ]
apt_install=(apt-get install -y -q --no-install-recommends --allow-downgrades
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
# Debian's nginx starts its default site on port 80 when installed: no service
# starts during the install (policy-rc.d), and the default site goes.
printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
chmod 0755 /usr/sbin/policy-rc.d
trap 'rm -f /usr/sbin/policy-rc.d' EXIT
shipped=("$root"/packages/*.deb)
if [ -e "${shipped[0]}" ]; then
    (cd "$root/packages" && sha256sum --check --strict --quiet SHA256SUMS)
    "${apt_install[@]}" "${shipped[@]}" "${pins[@]}" python3 logrotate curl
else
    apt-get update -q
    "${apt_install[@]}" "${pins[@]}" python3 logrotate curl
fi
for pin in "${pins[@]}"; do
    installed=$(dpkg-query -W -f='${Version}' "${pin%%=*}")
    if [ "$installed" != "${pin#*=}" ]; then
        echo "install.sh: ${pin%%=*} is $installed, not the pinned ${pin#*=}" >&2
        exit 1
    fi
done
apt-mark hold "${pins[@]%%=*}" >/dev/null
rm -f /etc/nginx/sites-enabled/default

# The CloudWatch agent: AWS's .deb, from the region's bucket (through the S3
# gateway endpoint), checked against its detached signature with gpgv. gpgv
# trusts any key it is given, so openpgp_keyring.py first refuses a key that
# is not AWS's CloudWatch agent key, by its fingerprint (AWS's page
# "Verifying the signature of the CloudWatch agent package" gives it; change
# it here if AWS changes its key).
agent_key_fingerprint=937616F3450B7D806CBD9725D58167303B789C72
agent_url=https://amazoncloudwatch-agent-$AWS_DEFAULT_REGION.s3.$AWS_DEFAULT_REGION.amazonaws.com
agent_dir=$(mktemp -d)
for file in assets/amazon-cloudwatch-agent.gpg debian/amd64/latest/amazon-cloudwatch-agent.deb \
    debian/amd64/latest/amazon-cloudwatch-agent.deb.sig; do
    curl --fail --silent --show-error --retry 3 --max-time 300 --output "$agent_dir/${file##*/}" "$agent_url/$file"
done
python3 "$bundle/openpgp_keyring.py" --fingerprint "$agent_key_fingerprint" \
    "$agent_dir/amazon-cloudwatch-agent.gpg" "$agent_dir/keyring.gpg"
gpgv --keyring "$agent_dir/keyring.gpg" "$agent_dir/amazon-cloudwatch-agent.deb.sig" \
    "$agent_dir/amazon-cloudwatch-agent.deb"
"${apt_install[@]}" "$agent_dir/amazon-cloudwatch-agent.deb"
rm -rf "$agent_dir"

install -d -m 0755 /etc/hosp-proxy /var/log/hosp-proxy
test -f "$root/infra/nginx/render.py"
test -f "$root/infra/nginx/dns_refresh.py"

# --- the settings, in the one file render-nginx.sh, origin-secret-refresh.sh
# and the dns-refresh service read (proxy-env.sh says how).
cat >/etc/hosp-proxy/proxy.env.new <<SETTINGS
# Written by $bundle/install.sh; read by render-nginx.sh,
# origin-secret-refresh.sh and hosp-proxy-dns-refresh.service.
AWS_DEFAULT_REGION=$AWS_DEFAULT_REGION
HOSP_UPSTREAM=$HOSP_UPSTREAM
INTERCEPTOR_HOST=$INTERCEPTOR_HOST
PUBLIC_NAMES=$PUBLIC_NAMES
PUBLIC_LISTEN=80
ORIGIN_SECRET_ARN=$ORIGIN_SECRET_ARN
ORIGIN_SECRET_FILE=/etc/hosp-proxy/origin-secret
NGINX_CONF=/etc/nginx/nginx.conf
SETTINGS
mv -f /etc/hosp-proxy/proxy.env.new /etc/hosp-proxy/proxy.env

# --- NGINX's config: fetch the origin secret and render with it; nginx -t
# runs before the config is put in place.
"$bundle/origin-secret-refresh.sh" --force

# --- systemd: NGINX's drop-in (TZ=UTC, restart on failure), the DNS refresh
# and the origin secret refresh, each a oneshot service with its timer.
install -d -m 0755 /etc/systemd/system/nginx.service.d
install -m 0644 "$bundle/systemd/nginx.service.d/10-hosp-proxy.conf" /etc/systemd/system/nginx.service.d/
install -m 0644 "$bundle"/systemd/hosp-proxy-*.service "$bundle"/systemd/hosp-proxy-*.timer /etc/systemd/system/

# --- log rotation, and shipping to CloudWatch Logs: one stream per instance
# in each group; the event time is the one NGINX wrote in the line (UTC).
# cloudwatch-agent.json is plain JSON (no comments possible): its
# @ACCESS_LOG_GROUP@, @ERROR_LOG_GROUP@ and @HANDOFF_LOG_GROUP@ become the stack's log groups
# (checked above: no character sed or JSON would read specially).
install -m 0644 "$bundle/logrotate/hosp-proxy" /etc/logrotate.d/hosp-proxy
agent_config=/opt/aws/amazon-cloudwatch-agent/etc/hosp-proxy.json
sed -e "s|@ACCESS_LOG_GROUP@|$ACCESS_LOG_GROUP|" -e "s|@ERROR_LOG_GROUP@|$ERROR_LOG_GROUP|" \
    -e "s|@HANDOFF_LOG_GROUP@|$HANDOFF_LOG_GROUP|" \
    "$bundle/cloudwatch-agent.json" >"$agent_config"
/opt/aws/amazon-cloudwatch-agent/bin/amazon-cloudwatch-agent-ctl -a fetch-config \
    -m ec2 -s -c "file:$agent_config"

# --- start
systemctl daemon-reload
systemctl enable --now nginx.service
# Record the addresses NGINX just resolved, so that the timer's first run
# already compares against them.
python3 "$root/infra/nginx/dns_refresh.py" --upstream "$HOSP_UPSTREAM"
systemctl enable --now hosp-proxy-dns-refresh.timer hosp-proxy-origin-secret.timer
# Both listeners answer, as the two target groups' health checks will ask.
curl --fail --silent --show-error --max-time 5 --output /dev/null http://127.0.0.1/_proxy/health
curl --fail --silent --show-error --max-time 5 --output /dev/null http://127.0.0.1:8081/_proxy/health
echo "install.sh: the HOSP proxy is running"
