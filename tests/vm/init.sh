#!/bin/busybox sh
# /init of the test VM's initramfs (tests/vm/run.sh builds it): load the virtio and 9p modules,
# mount the host's root (read-only 9p) and switch_root into it to run the guest script named
# by corral.guest= on the kernel command line. switch_root, not chroot: from a chrooted
# process clone(CLONE_NEWUSER) fails with EPERM, and NsJail could not start a jail.
/bin/busybox --install -s /bin
export PATH=/bin

fail() {
    echo "corral-vm init: $*"
    poweroff -f
}

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev

while read -r module; do
    insmod "/modules/$module.ko" || fail "insmod $module failed"
done </modules/order

guest=
for word in $(cat /proc/cmdline); do
    case "$word" in corral.guest=*) guest="${word#corral.guest=}" ;; esac
done
[ -n "$guest" ] || fail "no corral.guest= on the kernel command line"

# cache=loose: the guest caches what it read (the host's files do not change under a test run),
# which makes a Python start several times faster than a round trip to the host per stat.
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144,cache=loose hostroot /newroot || fail "cannot mount the host's root"
[ -f "/newroot$guest" ] || fail "no $guest on the host's root"

# The guest script mounts its own /proc and /sys; /dev moves along (the shared root is
# read-only, so it cannot be created there).
mount --move /dev /newroot/dev
umount /proc /sys
exec switch_root /newroot /bin/bash "$guest"
