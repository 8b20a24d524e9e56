#!/usr/bin/env bash
# Checks that the binaries the tests need are on this machine (PostgreSQL server binaries
# for throwaway test servers, promtool for alert-rule tests). Installs them with apt when
# running as root; otherwise says what is missing.
set -euo pipefail
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
