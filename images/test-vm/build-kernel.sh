#!/bin/sh
# Fetches (or reuses) Debian's cloud kernel and builds a small busybox initrd for the test guest.
# Prints two lines: the kernel image path and the modules directory (lib/modules/<version>).
# The initrd is built by build-initrd (below) from the same modules.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
pkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null | awk '/Depends: linux-image-/ {print $2; exit}')
[ -n "$pkg" ] || { echo "build-kernel: cannot resolve linux-image-cloud-amd64 (apt-get update?)" >&2; exit 1; }
dir="$PRIMER_VM_CACHE/kernel-$pkg"
if [ ! -f "$dir/done" ]; then
    rm -rf "$dir" && mkdir -p "$dir"
    (cd "$dir" && apt-get download -q "$pkg" >&2 && dpkg -x ./*.deb root && rm -f ./*.deb)
    kver=$(ls "$dir/root/lib/modules")
    depmod -b "$dir/root" "$kver"
    touch "$dir/done"
fi
kver=$(ls "$dir/root/lib/modules")
echo "$dir/root/boot/vmlinuz-$kver"
echo "$dir/root/lib/modules/$kver"
