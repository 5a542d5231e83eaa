#!/bin/sh
# Builds (or reuses) the base disk image of the test guest and prints its path and the byte
# offset and length of its trailing config partition: "IMAGE OFFSET LENGTH".
# Usage: build-image.sh [--fs ext4|xfs|btrfs] [--table gpt|mbr] [--layout abutting|ironic]
#                       VARIANT [PRIMER_DEB]
#   VARIANT base: Debian bookworm + primer (from PRIMER_DEB, built by packaging/build-deb.sh);
#   VARIANT cloudinit: the same guest with Debian's cloud-init instead of primer;
#   VARIANT users: base + sudo, primer configured with a default user;
#   VARIANT reclaim: base with `reclaim.enabled: true` (primer-reclaim.service does its job).
# Disk: p1 LABEL=root (--fs, default ext4) 640 MiB, p2 the last 64 MiB (Ironic's placement)
# left empty: tests write a config drive into it on a per-test qcow2 overlay.
#   --table gpt (default): p1 type 8300 named root, p2 type 0700; mbr: p1 0x83, p2 0x0c.
#   --layout abutting (default): p2 starts right after p1 (the target layout);
#   ironic: 128 MiB of free space between root and config and, on GPT, config unnamed type
#   8300, as Ironic's `sgdisk -n 0:-64MB:0` leaves a whole-disk image grown onto a bigger disk.
# Every input is part of the cache key.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
fs=ext4
table=gpt
layout=abutting
while [ $# -gt 0 ]; do
    case "$1" in
        --fs) fs=$2; shift 2 ;;
        --table) table=$2; shift 2 ;;
        --layout) layout=$2; shift 2 ;;
        --*) echo "build-image: unknown option $1" >&2; exit 2 ;;
        *) break ;;
    esac
done
case "$fs/$table/$layout" in
    ext4/*|xfs/*|btrfs/*) ;;
    *) echo "build-image: --fs ext4|xfs|btrfs" >&2; exit 2 ;;
esac
case "$table" in gpt|mbr) ;; *) echo "build-image: --table gpt|mbr" >&2; exit 2 ;; esac
case "$layout" in abutting|ironic) ;; *) echo "build-image: --layout abutting|ironic" >&2; exit 2 ;; esac
variant=${1:-base}
deb=${2:-}
# The reclaim variant is the base guest configured differently: same rootfs.
rootfs_variant=$variant
[ "$variant" = reclaim ] && rootfs_variant=base
rootfs=$("$here/build-rootfs.sh" "$rootfs_variant")
kernel_out=$("$here/build-kernel.sh")
mods=$(echo "$kernel_out" | tail -n1)
deb_hash=none
[ -n "$deb" ] && deb_hash=$(sha256sum "$deb" | cut -c1-16)
key=$(hash_of "$rootfs $mods $deb_hash $fs $table $layout $(cat "$here/build-image.sh" "$here"/guest/*)")
suffix=""
[ "$fs/$table/$layout" = ext4/gpt/abutting ] || suffix="-$fs-$table-$layout"
img="$PRIMER_VM_CACHE/disk-$variant$suffix-$key.img"
root_mib=640
cfg_mib=64
gap_mib=0
[ "$layout" = ironic ] && gap_mib=128
if [ ! -s "$img" ]; then
    echo "build-image: $variant -> $img" >&2
    work=$(mktemp -d -p /dev/shm primer-vm.XXXXXX 2>/dev/null || mktemp -d)
    trap 'rm -rf "$work"' EXIT
    tree="$work/root"
    mkdir -p "$tree"
    tar --zstd -xpf "$rootfs" -C "$tree"
    kver=$(basename "$mods")
    mkdir -p "$tree/usr/lib/modules"
    cp -a "$mods" "$tree/usr/lib/modules/$kver"
    depmod -b "$tree" "$kver"

    if [ -n "$deb" ]; then
        cp "$deb" "$tree/tmp/primer.deb"
        chroot "$tree" dpkg -i /tmp/primer.deb >&2
        rm -f "$tree/tmp/primer.deb"
    fi
    if [ -n "$deb" ]; then
        # Under TCG the guest runs 20-50x slower than on hardware: udev's coldplug attaches a
        # virtio-scsi CD-ROM ~4 s after primer starts, (6-9 s with two guests at once), past the 3 s default wait. An image
        # builder for a slow platform raises the deadline the same way.
        # Settings go into drop-ins, never into the main file (README "Configuration").
        dropin="$tree/etc/primer/primer.yaml.d"
        mkdir -p "$dropin"
        printf 'probe:\n  wait_seconds: 25\n' >"$dropin/50-test-vm.yaml"
        # Under TCG an RSA 3072 host key takes tens of seconds (bignum code runs 20-50x
        # slower), which with two guests at once overran the unit's 90 s bound; the guests
        # generate the fast types (the generation path is the same).
        printf 'ssh_host_keys:\n  types: [ed25519, ecdsa]\n' >>"$dropin/50-test-vm.yaml"
    fi
    if [ "$variant" = reclaim ]; then
        mkdir -p "$tree/etc/primer/primer.yaml.d"
        printf 'reclaim:\n  enabled: true\n' >"$tree/etc/primer/primer.yaml.d/60-reclaim.yaml"
        ln -sf /usr/lib/systemd/system/primer-reclaim.service "$tree/etc/systemd/system/multi-user.target.wants/primer-reclaim.service"
    fi
    if [ "$variant" = users ]; then
        # A default user as an image builder configures one: the drive's keys and password go
        # to it, and it may sudo without a password.
        mkdir -p "$tree/etc/primer/primer.yaml.d"
        cat >"$tree/etc/primer/primer.yaml.d/60-users.yaml" <<'EOF'
default_user:
  name: debian
  gecos: Debian
  groups: [adm, sudo]
  shell: /bin/bash
  sudo: "ALL=(ALL) NOPASSWD:ALL"
  lock_password: true
EOF
    fi
    if [ "$variant" = cloudinit ]; then
        # Only the config drive datasource, as primer: no network probing for metadata servers.
        printf 'datasource_list: [ ConfigDrive, None ]\n' >"$tree/etc/cloud/cloud.cfg.d/90-primer-test.cfg"
    fi
    install -m 0755 "$here/guest/primer-e2e" "$tree/usr/local/sbin/primer-e2e"
    install -m 0755 "$here/guest/primer-e2e-reclaim" "$tree/usr/local/sbin/primer-e2e-reclaim"
    install -m 0644 "$here/guest/primer-e2e.service" "$tree/etc/systemd/system/primer-e2e.service"
    ln -sf /etc/systemd/system/primer-e2e.service "$tree/etc/systemd/system/multi-user.target.wants/primer-e2e.service"
    install -m 0644 "$here/guest/10-e2e.network" "$tree/etc/systemd/network/10-e2e.network"
    # networkd is the base guest's network backend. The ifupdown and nm variants mask it: the
    # first boot applies systemd's presets, which would enable it beside their own backend.
    # primer-scripts.service runs after network-online.target; a guest without a configured NIC
    # would wait the full wait-online time-out (2 min) first. The test guests reach
    # network-online at once (the network tests wait for their links themselves); cloud-init's
    # comparison guest keeps the stock behaviour.
    if [ "$variant" != cloudinit ]; then
        for u in systemd-networkd-wait-online.service NetworkManager-wait-online.service; do
            ln -sf /dev/null "$tree/etc/systemd/system/$u"
        done
    fi
    case "$variant" in
        base|cloudinit|users) ln -sf /usr/lib/systemd/system/systemd-networkd.service "$tree/etc/systemd/system/multi-user.target.wants/systemd-networkd.service" ;;
        *) for u in systemd-networkd.service systemd-networkd.socket systemd-networkd-wait-online.service; do
               ln -sf /dev/null "$tree/etc/systemd/system/$u"
           done ;;
    esac
    # A fixed machine id (first-boot units run via systemd.condition-first-boot=1 on the kernel
    # line, without the 12-17 s TCG cost of initialising one), a placeholder host name that the
    # drive must replace, locked root password, fresh SSH host keys for this image.
    echo 5e2e0000000000000000000000000001 >"$tree/etc/machine-id"
    echo image-placeholder >"$tree/etc/hostname"
    printf '127.0.0.1\tlocalhost\n127.0.1.1\timage-placeholder\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$tree/etc/hosts"
    chroot "$tree" passwd -l root >/dev/null
    rm -f "$tree"/etc/ssh/ssh_host_*
    chroot "$tree" ssh-keygen -A >/dev/null
    # ext4 is checked at boot (fsck.ext4 is in the rootfs); XFS and btrfs are not (their
    # checkers are not in the guest and neither wants a boot-time fsck).
    pass=1
    [ "$fs" = ext4 ] || pass=0
    printf 'LABEL=root / %s rw,relatime 0 %s\n' "$fs" "$pass" >"$tree/etc/fstab"

    total=$((1 + root_mib + gap_mib + cfg_mib + 1))
    [ "$table" = mbr ] && total=$((1 + root_mib + gap_mib + cfg_mib))
    truncate -s "${total}M" "$img.tmp"
    if [ "$table" = gpt ]; then
        if [ "$layout" = ironic ]; then
            # Ironic's own command (no -t/-c: type 8300, empty name), start relative to the
            # end of the largest free block.
            sgdisk -o -n "1:2048:+${root_mib}M" -t 1:8300 -c 1:root -n "2:-${cfg_mib}M:0" "$img.tmp" >/dev/null
        else
            sgdisk -o -n "1:2048:+${root_mib}M" -t 1:8300 -c 1:root -n "2:-${cfg_mib}M:0" -t 2:0700 "$img.tmp" >/dev/null
        fi
        # sgdisk -q has been seen to write nothing and exit 0: check what is really there.
        sgdisk -p "$img.tmp" | grep -q '^ *2 ' || { echo "build-image: sgdisk wrote no partition 2" >&2; exit 1; }
    else
        # parted's placement for Ironic's MBR config partition: the last 64 MiB, type 0x0c.
        cfg_start=$(((total - cfg_mib) * 2048))
        printf 'label: dos\nstart=2048, size=%s, type=83\nstart=%s, type=c\n' \
            "$((root_mib * 2048))" "$cfg_start" | sfdisk -q --no-reread --no-tell-kernel "$img.tmp" >/dev/null
    fi
    case "$fs" in
        ext4)
            mkfs.ext4 -q -F -L root -d "$tree" -E offset=1048576 "$img.tmp" "${root_mib}M"
            ;;
        btrfs)
            # mkfs.btrfs populates from a directory itself (no mount).
            truncate -s "${root_mib}M" "$work/root.fs"
            # btrfs-progs 6.2 --rootdir sizes the filesystem itself and extends the file past
            # the partition (773 MiB for this tree, -b or not); --shrink makes it the minimum
            # (~480 MiB), smaller than its partition, which reclaim grows like any other.
            mkfs.btrfs -q -L root --shrink --rootdir "$tree" "$work/root.fs" >/dev/null 2>&1
            [ "$(stat -c %s "$work/root.fs")" -le $((root_mib * 1048576)) ] ||
                { echo "build-image: btrfs root larger than ${root_mib} MiB" >&2; exit 1; }
            dd if="$work/root.fs" of="$img.tmp" bs=1M seek=1 conv=notrunc,sparse status=none
            ;;
        xfs)
            # mkfs.xfs 6.1 populates only from a protofile listing every file: a loop mount
            # and a copy is simpler and as fast here.
            truncate -s "${root_mib}M" "$work/root.fs"
            mkfs.xfs -q -L root "$work/root.fs"
            mkdir -p "$work/mnt"
            mount -o loop "$work/root.fs" "$work/mnt"
            trap 'umount "$work/mnt" 2>/dev/null || true; rm -rf "$work"' EXIT
            cp -a "$tree/." "$work/mnt/"
            umount "$work/mnt"
            dd if="$work/root.fs" of="$img.tmp" bs=1M seek=1 conv=notrunc,sparse status=none
            ;;
    esac
    mv "$img.tmp" "$img"
fi
# The config partition (2) from the table, whichever kind.
line=$(sfdisk -d "$img" | grep "^$img""2 :")
start=$(echo "$line" | sed -n 's/.*start= *\([0-9]*\).*/\1/p')
size=$(echo "$line" | sed -n 's/.*size= *\([0-9]*\).*/\1/p')
[ -n "$start" ] && [ -n "$size" ] || { echo "build-image: no partition 2 in $img" >&2; exit 1; }
echo "$img $((start * 512)) $((size * 512))"
