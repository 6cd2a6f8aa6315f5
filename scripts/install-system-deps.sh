#!/usr/bin/env bash
# Install the system packages Corral's services and tests need, if they are missing.
# Python packages come from the lockfile through Pants; Pants itself through ./pants.
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v curl >/dev/null || missing+=(curl)
# The browser tests of `make test` (the playground and Swagger UI in headless chromium).
command -v chromium >/dev/null || missing+=(chromium)
# The tests' Prometheus (tests/integration/test_prometheus.py) and promtool for deploy/prometheus.
{ command -v prometheus && command -v promtool; } >/dev/null || missing+=(prometheus)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing ${missing[*]}: install them (as root: apt-get install ${missing[*]})" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The language runtimes (nsjail/runtimes.toml), and the python-sci packages.
scripts/install-runtimes.sh
