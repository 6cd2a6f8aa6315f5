#!/usr/bin/env bash
# The sandbox's tests on a cgroup v2 host with the x32 ABI on: Debian 12's own kernel in a VM.
#
#     tests/vm/run.sh [test|bench]        (make test-cgroup2 runs `test`)
#
# This machine boots cgroup v1 (hybrid) and refuses x32; production hosts are cgroup v2, and
# Debian's kernel has x32 one boot parameter away. So: install qemu, busybox-static and cpio
# from Debian if missing, download Debian 12's stock kernel package (the one linux-image-amd64
# depends on) into a cache, build a small initramfs (busybox, the virtio/9p modules, init.sh),
# and boot it under software emulation (KVM guests hang at boot on these machines) with the
# host's root shared read-only over 9p. init.sh switches into that root and runs guest.sh,
# which mounts a pure cgroup v2 hierarchy and runs pytest from the venv `pants export` made
# (Pants itself would be far too slow in the VM) on the sandbox's contract, attack,
# ordinary-program and host suites. Results come back through a second, writable 9p share:
# var/vm/results/{pytest.log,junit.xml,status,timings}.
#
# `bench` runs bench/sandbox_latency.py in the VM instead: print(1) through NsJailSandbox next
# to bare NsJail, on cgroup v2.
#
# Environment: CORRAL_VM_CACHE (kernel and initramfs; default ~/.cache/corral/vm),
# CORRAL_VM_TIMEOUT_S (the whole VM run, default 2400), CORRAL_VM_TIME_SCALE (the tests'
# CORRAL_TEST_TIME_SCALE in the VM, default 10), CORRAL_VM_CPUS, CORRAL_VM_MEMORY_MB,
# CORRAL_VM_BENCH_RUNS (default 20), CORRAL_VM_PYTEST_ARGS (pytest's arguments instead of the
# three suites, e.g. one test file or `-k x32` with its file, for a quicker look).
set -euo pipefail

mode="${1:-test}"
case "$mode" in test | bench) ;; *) echo "usage: $0 [test|bench]" >&2; exit 2 ;; esac

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)"
cache="${CORRAL_VM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/corral/vm}"
results="$repo/var/vm/results"
timeout_s="${CORRAL_VM_TIMEOUT_S:-2400}"
time_scale="${CORRAL_VM_TIME_SCALE:-10}"
cpus="${CORRAL_VM_CPUS:-2}"
memory_mb="${CORRAL_VM_MEMORY_MB:-3072}"
bench_runs="${CORRAL_VM_BENCH_RUNS:-20}"
# Loaded in this order by init.sh: each depends on modules before it.
modules=(virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci netfs fscache 9pnet 9pnet_virtio 9p)

say() { echo "test-cgroup2: $*" >&2; }
die() { say "error: $*"; exit 1; }

[[ "$(id -u)" -eq 0 ]] || die "run it as root (the sandbox under test needs root in the VM, and apt-get here)"
# The guest mounts its own tmpfs on /run and /tmp, hiding the host's files there.
case "$repo/" in /run/* | /tmp/*) die "the checkout ($repo) must not live under /run or /tmp: the VM hides those" ;; esac

# -- system packages ------------------------------------------------------------------------
apt_updated=
apt_update() {
  if [[ -z "$apt_updated" ]]; then
    apt-get update -qq
    apt_updated=1
  fi
}
missing=()
command -v qemu-system-x86_64 >/dev/null || missing+=(qemu-system-x86)
# The initramfs needs a static busybox (the dynamic one of package busybox has no libc there).
dpkg-query -W -f '${Status}' busybox-static 2>/dev/null | grep -q 'ok installed' || missing+=(busybox-static)
command -v cpio >/dev/null || missing+=(cpio)
if ((${#missing[@]})); then
  say "installing ${missing[*]}"
  apt_update
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
busybox=/bin/busybox

# -- the kernel -----------------------------------------------------------------------------
kernel_package() {
  apt-cache depends linux-image-amd64 2>/dev/null | awk '$1 == "Depends:" && $2 ~ /^linux-image-/ { print $2; exit }'
}
package="$(kernel_package)"
if [[ -z "$package" ]]; then
  apt_update
  package="$(kernel_package)"
fi
[[ -n "$package" ]] || die "apt-cache does not know linux-image-amd64: is this Debian 12 with its main archive?"
kernel_dir="$cache/$package"
if [[ ! -f "$kernel_dir/.unpacked" ]]; then
  say "downloading $package (Debian's kernel) into $cache"
  mkdir -p "$cache"
  rm -rf "$kernel_dir" "$cache/download"
  mkdir -p "$cache/download"
  # The exact package name, never a glob: a glob fetches every kernel flavour (~1.7 GB).
  # (As root into root's directory apt warns that it downloads unsandboxed: harmless.)
  if ! (cd "$cache/download" && apt-get download -qq "$package" 2>"$cache/download.log"); then
    cat "$cache/download.log" >&2
    die "apt-get download $package failed"
  fi
  debs=("$cache/download/${package}_"*.deb)
  [[ -f "${debs[0]}" ]] || die "apt-get download $package fetched nothing"
  dpkg-deb -x "${debs[0]}" "$kernel_dir"
  rm -rf "$cache/download"
  touch "$kernel_dir/.unpacked"
fi
vmlinuz=("$kernel_dir"/boot/vmlinuz-*)
[[ -f "${vmlinuz[0]}" ]] || die "no kernel in $kernel_dir/boot"
kernel_version="${vmlinuz[0]##*/vmlinuz-}"

# -- the initramfs: busybox, the modules, init.sh (rebuilt every run: it takes a moment) ----
initramfs="$cache/initramfs-$kernel_version.cpio.gz"
staging="$(mktemp -d)"
trap 'rm -rf "$staging"' EXIT
mkdir -p "$staging"/{bin,dev,proc,sys,newroot,modules}
cp "$busybox" "$staging/bin/busybox"
for module in "${modules[@]}"; do
  found="$(find "$kernel_dir/lib/modules/$kernel_version/kernel" -name "$module.ko" -print -quit)"
  [[ -n "$found" ]] || die "module $module.ko is not in $package"
  cp "$found" "$staging/modules/"
done
printf '%s\n' "${modules[@]}" >"$staging/modules/order"
cp "$repo/tests/vm/init.sh" "$staging/init"
chmod 0755 "$staging/init" "$staging/bin/busybox"
(cd "$staging" && find . -print0 | cpio --null -o -H newc --quiet | gzip -1) >"$initramfs.partial"
mv "$initramfs.partial" "$initramfs"

# -- Python: every locked dependency in a venv, sources compiled once here -----------------
exported_venv() {
  local found
  found="$(ls -dt "$repo"/dist/export/python/virtualenvs/python-default/*/ 2>/dev/null | head -1)"
  echo "${found%/}"
}
venv="$(exported_venv)"
if [[ -z "$venv" || "$repo/3rdparty/python/default.lock" -nt "$venv/pyvenv.cfg" ]]; then
  say "exporting the python-default resolve into a venv (./pants export)"
  (cd "$repo" && ./pants export --resolve=python-default >/dev/null)
  venv="$(exported_venv)"
fi
[[ -x "$venv/bin/python" ]] || die "no exported venv under dist/export/python/virtualenvs/python-default"
# Compiling in the VM would happen on every run (its view of the checkout is read-only) and
# costs minutes under emulation.
"$venv/bin/python" -m compileall -q -j 0 "$venv/lib" "$repo/packages" "$repo/tests" "$repo/bench" >/dev/null || true

# -- what the guest runs ----------------------------------------------------------------------
rm -rf "$results"
mkdir -p "$results"
{
  printf 'REPO=%q\n' "$repo"
  printf 'VENV=%q\n' "$venv"
  printf 'MODE=%q\n' "$mode"
  printf 'TIME_SCALE=%q\n' "$time_scale"
  printf 'BENCH_RUNS=%q\n' "$bench_runs"
  printf 'PYTEST_ARGS=%q\n' "${CORRAL_VM_PYTEST_ARGS:-}"
} >"$results/job.env"

# -- boot -----------------------------------------------------------------------------------
say "booting $package under emulation ($cpus cpus, ${memory_mb} MiB, bound ${timeout_s}s); console in ${results#"$repo/"}/console.log"
started=$(date +%s.%N)
qemu_status=0
timeout --foreground -k 10 "$timeout_s" qemu-system-x86_64 \
  -accel tcg,thread=multi -cpu max -smp "$cpus" -m "$memory_mb" \
  -nographic -no-reboot \
  -kernel "${vmlinuz[0]}" -initrd "$initramfs" \
  -append "console=ttyS0 panic=-1 syscall.x32=y quiet loglevel=3 corral.guest=$repo/tests/vm/guest.sh" \
  -virtfs "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap" \
  -virtfs "local,path=$results,mount_tag=results,security_model=none,multidevs=remap" \
  </dev/null 2>&1 | tee "$results/console.log" || qemu_status=$?
elapsed=$(awk -v a="$started" -v b="$(date +%s.%N)" 'BEGIN { printf "%.0f", b - a }')

# -- results --------------------------------------------------------------------------------
if [[ ! -f "$results/status" ]]; then
  if ((qemu_status == 124)); then
    die "the VM did not finish within ${timeout_s}s (CORRAL_VM_TIMEOUT_S); see $results/console.log"
  fi
  die "the VM ended (qemu status $qemu_status) without a result; see $results/console.log"
fi
status="$(cat "$results/status")"
[[ -f "$results/timings" ]] && sed 's/^/test-cgroup2: /' "$results/timings" >&2
say "VM run: ${elapsed}s in all"
if [[ -f "$results/junit.xml" ]]; then
  python3 - "$results/junit.xml" <<'PY' >&2
import sys
import xml.etree.ElementTree as ET

root = ET.parse(sys.argv[1]).getroot()
totals = dict.fromkeys(("tests", "failures", "errors", "skipped"), 0)
for suite in [root] if root.tag == "testsuite" else root.iter("testsuite"):
    for key in totals:
        totals[key] += int(suite.get(key, 0))
failed = totals["failures"] + totals["errors"]
print(f"test-cgroup2: pytest in the VM: {totals['tests'] - failed - totals['skipped']} passed, "
      f"{failed} failed, {totals['skipped']} skipped")
PY
fi
[[ "$status" == 0 ]] || die "$mode in the VM failed (status $status); see $results/pytest.log"
say "$mode in the VM passed"
