#!/bin/sh
# Builds (or reuses) a ~1 MB busybox-static initrd that loads the virtio modules (the cloud
# kernel has them as modules), finds the root filesystem by label and switches to it.
# Usage: build-initrd.sh MODULES_DIR ; prints the initrd path.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
mods=$1
command -v cpio >/dev/null || { echo "build-initrd: cpio missing (run setup-host.sh)" >&2; exit 1; }
kver=$(basename "$mods")
key=$(hash_of "$kver $(cat "$here/build-initrd.sh")")
out="$PRIMER_VM_CACHE/initrd-$kver-$key.cpio.gz"
if [ ! -s "$out" ]; then
    t=$(mktemp -d)
    trap 'rm -rf "$t"' EXIT
    mkdir -p "$t/bin" "$t/dev" "$t/proc" "$t/sys" "$t/newroot" "$t/mods"
    cp /bin/busybox "$t/bin/busybox"
    for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci virtio_blk; do
        f=$(find "$mods/kernel" -name "$m.ko*" | head -n1)
        [ -n "$f" ] || continue # built in
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
for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci virtio_blk; do
    [ -f /mods/$m.ko ] && insmod /mods/$m.ko
done
root=""
i=0
while [ -z "$root" ] && [ $i -lt 100 ]; do
    root=$(findfs LABEL=root 2>/dev/null) || root=""
    [ -n "$root" ] || sleep 0.1
    i=$((i+1))
done
[ -n "$root" ] || { echo "initrd: no LABEL=root"; exec sh; }
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
