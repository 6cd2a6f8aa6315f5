#!/usr/bin/env bash
# Install the system packages Corral's services and tests need, if they are missing.
# Python packages come from the lockfile through Pants; Pants itself through ./pants.
set -euo pipefail
missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v curl >/dev/null || missing+=(curl)
# The runtimes of nsjail/runtimes.toml, from Debian (a runtime not installed is not offered).
# Node.js: any /usr/bin/node (Debian's nodejs, or NodeSource's package of the same name).
[ -x /usr/bin/gcc ] || missing+=(gcc)
[ -x /usr/bin/g++ ] || missing+=(g++)
# gcc only recommends the C library's headers, and installs here skip recommends.
[ -e /usr/include/stdio.h ] || missing+=(libc6-dev)
[ -x /usr/bin/node ] || missing+=(nodejs)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing ${missing[*]}: install them (as root: apt-get install ${missing[*]})" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
