#!/usr/bin/env bash
# Checks that the binaries the tests need are on this machine (PostgreSQL server binaries
# for throwaway test servers, promtool for alert-rule tests). Installs them with apt when
# running as root; otherwise says what is missing. Then installs jsforce (pinned) from npm
# into .cache/npm for the sandbox's client tests; without node/npm or the registry those
# tests skip and say why.
set -euo pipefail
JSFORCE_VERSION=3.10.16
jsforce() {
  local cache
  cache="$(cd "$(dirname "$0")/.." && pwd)/.cache/npm"
  if [ -f "$cache/node_modules/jsforce/package.json" ] &&
    grep -q "\"version\": \"$JSFORCE_VERSION\"" "$cache/node_modules/jsforce/package.json"; then
    echo "test services: jsforce $JSFORCE_VERSION present in $cache"
  elif ! command -v npm >/dev/null 2>&1; then
    echo "test services: npm not found; the jsforce client tests will skip" >&2
  elif timeout 300 npm install --prefix "$cache" --no-audit --no-fund --loglevel=error \
    "jsforce@$JSFORCE_VERSION" >/dev/null; then
    echo "test services: installed jsforce $JSFORCE_VERSION into $cache"
  else
    echo "test services: npm could not install jsforce (registry unreachable?); the jsforce client tests will skip" >&2
  fi
}
jsforce
missing=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
if [ ${#missing[@]} -eq 0 ]; then
  echo "test services: PostgreSQL binaries and promtool present"
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "test services: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "test services: missing ${missing[*]} (install them, or set UNSUBSCRIBE_SYNC_TEST_POSTGRES_DSN); dependent tests will skip" >&2
fi
