#!/usr/bin/env bash
# Installs the system programs driftrec's local services and tests need, where missing:
# redis-server (Debian package), Java 17+ and Maven (to fetch and run the Kafka broker),
# and Chromium (the dashboard's browser test drives it headless through Playwright).
# Idempotent: does nothing when everything is there.
set -euo pipefail

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v java >/dev/null 2>&1 || missing+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || missing+=(maven)
command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || missing+=(chromium)
[ ${#missing[@]} -eq 0 ] && exit 0

echo "installing system packages: ${missing[*]}" >&2
if [ "$(id -u)" -eq 0 ]; then
  SUDO=""
elif command -v sudo >/dev/null 2>&1; then
  SUDO="sudo"
else
  echo "driftrec needs ${missing[*]}: install them with your package manager" >&2
  echo "(Debian/Ubuntu: apt-get install ${missing[*]}), or point DRIFTREC_KAFKA_BOOTSTRAP /" >&2
  echo "DRIFTREC_REDIS_URL at existing services." >&2
  exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "no apt-get here: install ${missing[*]} with your package manager" >&2
  exit 1
fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian starts its own redis-server on 6379 after install; driftrec runs its own, so stop that one.
if [[ " ${missing[*]} " == *" redis-server "* ]]; then
  ($SUDO service redis-server stop || $SUDO systemctl stop redis-server || $SUDO pkill -x redis-server) >/dev/null 2>&1 || true
fi
