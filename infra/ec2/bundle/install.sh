#!/usr/bin/env bash
# ----------------------------------------------------------------------
# | HOSP retry proxy: set up one fleet instance from this bundle       |
# ----------------------------------------------------------------------
#
# The launch template's user data (infra/ec2/proxy.yaml) unpacks the bundle
# (`make bundle`) into /opt/hosp-proxy and runs this script as root on
# Amazon Linux 2023, with the stack's values in the environment:
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
# It installs the packages, writes /etc/hosp-proxy/proxy.env (the settings
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

# --- packages: NGINX and njs are nginx.org's (nginx.repo says why); the AWS
# CLI comes with the AMI, the rest from Amazon Linux's repositories. A bundle
# built with `build_bundle.py --packages DIR` carries nginx.org's RPMs and signing
# key in packages/, for a fleet without a route to nginx.org; dnf then checks
# their signatures against that key (localpkg_gpgcheck), as it would the
# repository's.
shipped=("$root"/packages/*.rpm)
if [ -e "${shipped[0]}" ]; then
    for key in "$root"/packages/*.key; do
        [ ! -e "$key" ] || rpm --import "$key"
    done
    dnf install -y --setopt=localpkg_gpgcheck=True \
        "${shipped[@]}" python3 amazon-cloudwatch-agent logrotate
else
    install -m 0644 "$bundle/nginx.repo" /etc/yum.repos.d/nginx.repo
    dnf install -y nginx nginx-module-njs python3 amazon-cloudwatch-agent logrotate
fi

install -d -m 0755 /etc/hosp-proxy /var/log/hosp-proxy
# AL2023 boots with SELinux permissive; should it be enforcing, NGINX needs
# the log label on its directory, and leave to connect to HOSP.
if [ "$(getenforce 2>/dev/null || true)" = Enforcing ]; then
    chcon -t httpd_log_t /var/log/hosp-proxy
    setsebool -P httpd_can_network_connect 1
fi
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
