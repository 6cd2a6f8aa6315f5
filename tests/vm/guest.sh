#!/bin/bash
# PID 1 of the test VM, in the host's root (read-only, over 9p): make a cgroup v2 host of it,
# run the job run.sh described in the results share, leave the outcome there, power off.
# Only the host's own files run here; nothing below writes outside tmpfs and the results share.
set -uo pipefail
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

uptime_s() { cut -d' ' -f1 /proc/uptime; }
say() { echo "corral-vm [$(uptime_s)s]: $*"; }
finish() {
    # Everything the host reads is written to the share before the power goes.
    sync
    umount /run/results 2>/dev/null
    /bin/busybox poweroff -f
}
fail() {
    say "error: $*"
    [ -d /run/results ] && echo "guest: $*" >>/run/results/timings 2>/dev/null
    finish
}

mount -t proc proc /proc
booted_s="$(uptime_s)"
mount -t sysfs sysfs /sys
# The shared root is read-only: every writable place gets a tmpfs (hiding the host's files there).
mount -t tmpfs -o mode=0755,size=512m tmpfs /run
mount -t tmpfs -o mode=1777,size=512m tmpfs /tmp
mkdir -p /dev/shm /dev/pts
mount -t tmpfs -o mode=1777,size=64m tmpfs /dev/shm
mount -t devpts devpts /dev/pts
/bin/busybox ip link set lo up

mkdir /run/results
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 results /run/results || fail "cannot mount the results share"
# shellcheck source=/dev/null
. /run/results/job.env || fail "no job.env in the results share"

# A pure cgroup v2 hierarchy, as on Debian 12: this shell in a leaf (no process may sit in a
# cgroup whose controllers are enabled for children), memory, pids and cpu enabled below the root.
mount -t cgroup2 cgroup2 /sys/fs/cgroup || fail "cannot mount cgroup2"
mkdir /sys/fs/cgroup/init
echo $$ >/sys/fs/cgroup/init/cgroup.procs
echo "+memory +pids +cpu" >/sys/fs/cgroup/cgroup.subtree_control || fail "cannot enable memory, pids and cpu"
say "cgroup2 controllers: $(cat /sys/fs/cgroup/cgroup.controllers)"

python="$VENV/bin/python"
# The point of this VM: x32 calls reach the kernel. Without that the x32 test proves nothing.
x32_pid="$("$python" -c 'import ctypes; print(ctypes.CDLL(None).syscall(0x40000000 | 39))')"
[ "$x32_pid" -gt 0 ] 2>/dev/null || fail "the kernel refuses x32 calls (getpid gave $x32_pid): syscall.x32=y missing?"
say "x32 ABI on (x32 getpid: $x32_pid)"

cd "$REPO" || fail "no checkout at $REPO"
roots=(packages/*/ tests/contract tests/testbed tests/integration bench)
PYTHONPATH="$(IFS=:; echo "${roots[*]/#/$REPO/}")"
export PYTHONPATH PYTHONDONTWRITEBYTECODE=1 HOME=/tmp TMPDIR=/tmp CI=true
export CORRAL_TEST_TIME_SCALE="$TIME_SCALE"
# The runtimes the VM offers: the suites here run Python, and the worker's self-test runs every
# runtime offered; under emulation a JVM, rustc or numpy take minutes to start. So the jail
# policy as shipped, with a runtimes table of the runtimes offered before those (a test-only
# table, read as the worker reads one: CORRAL_NSJAIL_POLICY_DIR).
VM_RUNTIMES="python c cpp javascript bash"
policy=/tmp/corral-vm-policy
mkdir -p "$policy"
cp nsjail/*.cfg nsjail/*.kafel nsjail/python_warm_stub.py "$policy"/
"$python" - nsjail/runtimes.toml "$policy/runtimes.toml" $VM_RUNTIMES <<'PY' || fail "cannot write the VM's runtimes table"
import re, sys
# Keep the sections [runtimes.<name>] named on the command line (and the comments before them).
parts = re.split(r"(?m)^(?=\[runtimes\.)", open(sys.argv[1]).read())
kept = [part for part in parts[1:] if re.match(r"\[runtimes\.([\w-]+)\]", part).group(1) in sys.argv[3:]]
open(sys.argv[2], "w").write(parts[0] + "".join(kept))
PY
export CORRAL_NSJAIL_POLICY_DIR="$policy"
say "runtimes offered: $VM_RUNTIMES"
started_s="$(uptime_s)"
say "up after ${booted_s}s of kernel time; running $MODE"

# The sandbox's contract suite, its attack and ordinary-program suites, its host checks
# (detection, clean-up after a dead worker), its warm jails' checks and a run's cgroups' removal, in one process.
# test_host.py skips its one v1-only case here ("this host has cgroup v2").
SUITES="tests/contract/test_nsjail.py packages/sandbox/tests/test_attacks.py packages/sandbox/tests/test_ordinary.py
    packages/sandbox/tests/test_host.py packages/sandbox/tests/test_warm.py packages/sandbox/tests/test_cgroups.py"
case "$MODE" in
test)
    # pyproject.toml's settings, as Pants passes them; no cache (the checkout is read-only).
    # Only the plugins the suites use: loading every installed one takes a minute here. A hung
    # test fails alone after 10 minutes (the slowest take ~10 s here), well inside run.sh's bound.
    # shellcheck disable=SC2086 # PYTEST_ARGS is words
    PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 "$python" -m pytest -c pyproject.toml -p pytest_asyncio.plugin -p pytest_timeout \
        -p no:cacheprovider --junitxml=/run/results/junit.xml \
        -o timeout=600 --durations=15 \
        ${PYTEST_ARGS:-$SUITES} \
        2>&1 | tee /run/results/pytest.log
    status=${PIPESTATUS[0]}
    ;;
bench)
    "$python" bench/sandbox_latency.py --runs "$BENCH_RUNS" 2>&1 | tee /run/results/bench.log
    status=${PIPESTATUS[0]}
    ;;
esac
ended_s="$(uptime_s)"
{
    echo "guest up after ${booted_s}s of kernel time"
    echo "$MODE ran for $(awk -v a="$started_s" -v b="$ended_s" 'BEGIN { printf "%.0f", b - a }')s in the VM"
} >/run/results/timings
echo "$status" >/run/results/status
say "$MODE done: status $status"
finish
