# shellcheck shell=bash
# ----------------------------------------------------------------------
# | Read /etc/hosp-proxy/proxy.env: the instance's settings            |
# ----------------------------------------------------------------------
#
# Sourced by render-nginx.sh and origin-secret-refresh.sh. install.sh writes
# proxy.env once, from the stack's values; systemd reads the same file for
# hosp-proxy-dns-refresh.service (EnvironmentFile=). Lines are NAME=value,
# without quotes; '#' starts a comment line. The file is parsed, never run
# as shell code, and an unknown name is an error (a typo must not pass as
# an unset setting). HOSP_PROXY_ENV points at another file (the tests).

PROXY_ENV=${HOSP_PROXY_ENV:-/etc/hosp-proxy/proxy.env}

# Sets AWS_DEFAULT_REGION, HOSP_UPSTREAM, INTERCEPTOR_HOST, PUBLIC_NAMES,
# PUBLIC_LISTEN (the public listener: a port, or 127.0.0.1:PORT),
# ORIGIN_SECRET_ARN, ORIGIN_SECRET_FILE and NGINX_CONF; fails unless each
# has a value.
# shellcheck disable=SC2034  # the settings are for the scripts that source this file
load_proxy_env() {
    local line name value
    AWS_DEFAULT_REGION='' HOSP_UPSTREAM='' INTERCEPTOR_HOST='' PUBLIC_NAMES='' PUBLIC_LISTEN=''
    ORIGIN_SECRET_ARN='' ORIGIN_SECRET_FILE='' NGINX_CONF=''
    if [ ! -r "$PROXY_ENV" ]; then
        echo "cannot read $PROXY_ENV" >&2
        return 1
    fi
    while IFS= read -r line || [ -n "$line" ]; do
        case $line in '' | '#'*) continue ;; esac
        name=${line%%=*}
        value=${line#*=}
        case $name in
            AWS_DEFAULT_REGION) AWS_DEFAULT_REGION=$value ;;
            HOSP_UPSTREAM) HOSP_UPSTREAM=$value ;;
            INTERCEPTOR_HOST) INTERCEPTOR_HOST=$value ;;
            PUBLIC_NAMES) PUBLIC_NAMES=$value ;;
            PUBLIC_LISTEN) PUBLIC_LISTEN=$value ;;
            ORIGIN_SECRET_ARN) ORIGIN_SECRET_ARN=$value ;;
            ORIGIN_SECRET_FILE) ORIGIN_SECRET_FILE=$value ;;
            NGINX_CONF) NGINX_CONF=$value ;;
            *)
                echo "$PROXY_ENV: unknown setting '$name'" >&2
                return 1
                ;;
        esac
    done <"$PROXY_ENV"
    for name in AWS_DEFAULT_REGION HOSP_UPSTREAM INTERCEPTOR_HOST PUBLIC_NAMES PUBLIC_LISTEN \
        ORIGIN_SECRET_ARN ORIGIN_SECRET_FILE NGINX_CONF; do
        if [ -z "${!name}" ]; then
            echo "$PROXY_ENV: $name has no value" >&2
            return 1
        fi
    done
    export AWS_DEFAULT_REGION # for the AWS CLI
}
