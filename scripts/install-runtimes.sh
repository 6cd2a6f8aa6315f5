#!/usr/bin/env bash
# Install the language runtimes of nsjail/runtimes.toml that this host lacks: Debian's gcc, g++,
# Node.js, OpenJDK 17, Go 1.19 and rustc 1.63, and the python-sci runtime's pinned packages
# (scripts/python-sci-packages.txt) for Debian's /usr/bin/python3 in PYTHON_SCI_DIR.
# Idempotent, and quick when everything is there: it checks paths, and the package directory
# carries the hash of the requirements it was installed from. A runtime left out is simply not
# offered by the worker (`requires` in runtimes.toml).
#
# Run as root (called by scripts/install-system-deps.sh, hence `make up`, and by .ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

python_sci_dir=${PYTHON_SCI_DIR:-/opt/corral/python-sci}
requirements=scripts/python-sci-packages.txt

missing=()
[ -x /usr/bin/gcc ] || missing+=(gcc)
[ -x /usr/bin/g++ ] || missing+=(g++)
# gcc only recommends the C library's headers, and installs here skip recommends.
[ -e /usr/include/stdio.h ] || missing+=(libc6-dev)
# Node.js: any /usr/bin/node (Debian's nodejs, or NodeSource's package of the same name).
[ -x /usr/bin/node ] || missing+=(nodejs)
# The runtimes name the JDK by its own directory, never through /etc/alternatives (the jail
# has no /etc but what runtimes.toml binds).
[ -x /usr/lib/jvm/java-17-openjdk-amd64/bin/javac ] || missing+=(openjdk-17-jdk-headless)
[ -x /usr/lib/go-1.19/bin/go ] || missing+=(golang-1.19-go)
# Debian's rustc, which links with gcc (cc): never a rustup toolchain under someone's home.
[ -x /usr/bin/rustc ] || missing+=(rustc)
[ -x /usr/bin/python3 ] || missing+=(python3)
/usr/bin/python3 -m pip --version >/dev/null 2>&1 || missing+=(python3-pip)

if ((${#missing[@]})); then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing ${missing[*]}: install them (as root: apt-get install ${missing[*]})" >&2
    exit 1
  fi
  started=$SECONDS
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  echo "installed ${missing[*]} in $((SECONDS - started)) s"
fi

# The python-sci packages: installed afresh beside the old directory, then swapped in, so a
# worker never sees half an install. Root-owned and not writable by others: the jail mounts it
# read-only, and the worker refuses policy files others can write. The stamp covers this script
# too: a change to how the directory is made remakes it.
stamp=$(cat "$requirements" "$0" | sha256sum | cut -d' ' -f1)
if [ "$(cat "$python_sci_dir/.requirements-sha256" 2>/dev/null)" != "$stamp" ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "python-sci packages missing or outdated in $python_sci_dir: run this as root" >&2
    exit 1
  fi
  started=$SECONDS
  staging="$python_sci_dir.new"
  rm -rf "$staging"
  mkdir -p "$(dirname "$python_sci_dir")"
  # --no-deps: the file pins every dependency itself; binary wheels only, nothing built here.
  /usr/bin/python3 -m pip install --quiet --disable-pip-version-check --no-input --root-user-action=ignore --no-deps \
    --only-binary=:all: --target "$staging" -r "$requirements"
  # Scripts pip wrote for the host (f2py, fonttools...) are of no use in the jail.
  rm -rf "$staging/bin"
  # An empty fontconfig configuration (FONTCONFIG_FILE in runtimes.toml): matplotlib asks
  # fc-list for system fonts, which without one complains on the job's stderr and is slow.
  printf '<?xml version="1.0"?>\n<fontconfig></fontconfig>\n' >"$staging/fonts.conf"
  echo "$stamp" >"$staging/.requirements-sha256"
  chown -R root:root "$staging"
  chmod -R u+rwX,go+rX,go-w "$staging"
  rm -rf "$python_sci_dir.old"
  [ ! -e "$python_sci_dir" ] || mv "$python_sci_dir" "$python_sci_dir.old"
  mv "$staging" "$python_sci_dir"
  rm -rf "$python_sci_dir.old"
  echo "installed the python-sci packages into $python_sci_dir in $((SECONDS - started)) s"
fi
