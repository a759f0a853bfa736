#!/usr/bin/env bash
# The image's HEALTHCHECK: GET /health on the main listener with nothing but
# bash (the runtime image has no curl). Healthy only on a 200: the fleet's
# /health answers 503 when a backend the node needs is down.
#   TOLLGATE_HEALTH_ADDR   host:port to ask (default: TOLLGATE_LISTEN, with a
#                          wildcard address asked on loopback)
set -euo pipefail
addr="${TOLLGATE_HEALTH_ADDR:-${TOLLGATE_LISTEN:-127.0.0.1:8080}}"
port="${addr##*:}"
host="${addr%:*}"
host="${host#[}"
host="${host%]}"
case "$host" in
  0.0.0.0 | "") host=127.0.0.1 ;;
  ::) host=::1 ;;
esac
exec 3<>"/dev/tcp/$host/$port"
printf 'GET /health HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n' "$host" >&3
status=""
IFS= read -r -t "${TOLLGATE_HEALTH_TIMEOUT:-3}" status <&3 || true
case "$status" in
  "HTTP/1."?" 200 "*) exit 0 ;;
esac
echo "tollgate unhealthy: ${status:-no answer}" >&2
exit 1
