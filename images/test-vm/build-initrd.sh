#!/bin/sh
# Builds (or reuses) a ~1 MB busybox-static initrd that loads the virtio modules (the cloud
# kernel has them as modules), finds the root filesystem and switches to it. Root: `root=` on
# the kernel line, a device path (root=/dev/vda1) or LABEL=... (default LABEL=root).
# Usage: build-initrd.sh MODULES_DIR [MODULE...] ; prints the initrd path. Extra modules (xfs,
# btrfs for those root filesystems: the cloud kernel has them as modules) are loaded after virtio
# with their dependencies, in modprobe's order.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
mods=$1
shift
extra="$*"
command -v cpio >/dev/null || { echo "build-initrd: cpio missing (run setup-host.sh)" >&2; exit 1; }
kver=$(basename "$mods")
key=$(hash_of "$kver $extra $(cat "$here/build-initrd.sh")")
out="$PRIMER_VM_CACHE/initrd-$kver-$key.cpio.gz"
if [ ! -s "$out" ]; then
    t=$(mktemp -d)
    trap 'rm -rf "$t"' EXIT
    mkdir -p "$t/bin" "$t/dev" "$t/proc" "$t/sys" "$t/newroot" "$t/mods"
    cp /bin/busybox "$t/bin/busybox"
    # The load order: virtio first, then each extra module after its dependencies (modprobe
    # --show-depends lists them in insmod order; built-in ones are not listed).
    files=""
    for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci virtio_blk; do
        f=$(find "$mods/kernel" -name "$m.ko*" | head -n1)
        [ -n "$f" ] && files="$files $f"
    done
    base=$(dirname "$(dirname "$(dirname "$mods")")")
    for m in $extra; do
        deps=$(modprobe -d "$base" -S "$kver" --show-depends "$m" | awk '$1 == "insmod" {print $2}')
        [ -n "$deps" ] || { echo "build-initrd: no module $m" >&2; exit 1; }
        files="$files $deps"
    done
    : >"$t/mods/order"
    for f in $files; do
        m=$(basename "$f" | sed 's/\.ko.*//')
        grep -qx "$m" "$t/mods/order" && continue
        echo "$m" >>"$t/mods/order"
        case "$f" in
            *.xz) xz -dc "$f" >"$t/mods/$m.ko" ;;
            *.zst) zstd -qdc "$f" >"$t/mods/$m.ko" ;;
            *) cp "$f" "$t/mods/$m.ko" ;;
        esac
    done
    cat >"$t/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t devtmpfs dev /dev
mount -t proc proc /proc
mount -t sysfs sys /sys
while read -r m; do
    insmod /mods/$m.ko || echo "initrd: insmod $m failed"
done </mods/order
want=LABEL=root
for a in $(cat /proc/cmdline); do
    case "$a" in root=*) want=${a#root=} ;; esac
done
root=""
i=0
while [ -z "$root" ] && [ $i -lt 100 ]; do
    case "$want" in
        /dev/*) [ -b "$want" ] && root=$want ;;
        *) root=$(findfs "$want" 2>/dev/null) || root="" ;;
    esac
    [ -n "$root" ] || sleep 0.1
    i=$((i+1))
done
[ -n "$root" ] || { echo "initrd: no root $want"; exec sh; }
mount -o rw "$root" /newroot
umount /proc /sys
mount --move /dev /newroot/dev
exec switch_root /newroot /sbin/init "$@"
INIT
    chmod 755 "$t/init"
    (cd "$t" && find . | cpio -o -H newc --quiet | gzip -1) >"$out.tmp"
    mv "$out.tmp" "$out"
fi
echo "$out"
