#!/bin/sh
# Builds (or reuses) the base disk image of the test guest and prints its path and the byte
# offset and length of its trailing config partition: "IMAGE OFFSET LENGTH".
# Usage: build-image.sh VARIANT [PRIMER_DEB]
#   VARIANT base: Debian bookworm + primer (from PRIMER_DEB, built by packaging/build-deb.sh);
#   VARIANT cloudinit: the same guest with Debian's cloud-init instead of primer;
#   VARIANT users: base + sudo, primer configured with a default user.
# Disk: GPT, p1 ext4 LABEL=root, p2 the last 64 MiB (Ironic's placement) left empty: tests
# write a config drive into it on a per-test qcow2 overlay.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
variant=${1:-base}
deb=${2:-}
rootfs=$("$here/build-rootfs.sh" "$variant")
kernel_out=$("$here/build-kernel.sh")
mods=$(echo "$kernel_out" | tail -n1)
deb_hash=none
[ -n "$deb" ] && deb_hash=$(sha256sum "$deb" | cut -c1-16)
key=$(hash_of "$rootfs $mods $deb_hash $(cat "$here/build-image.sh" "$here"/guest/*)")
img="$PRIMER_VM_CACHE/disk-$variant-$key.img"
root_mib=640
cfg_mib=64
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
        printf 'probe:\n  wait_seconds: 25\n' >"$tree/etc/primer/primer.yaml"
    fi
    if [ "$variant" = users ]; then
        # A default user as an image builder configures one: the drive's keys and password go
        # to it, and it may sudo without a password.
        cat >>"$tree/etc/primer/primer.yaml" <<'EOF'
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
    printf 'LABEL=root / ext4 rw,relatime 0 1\n' >"$tree/etc/fstab"

    total=$((1 + root_mib + cfg_mib + 1))
    truncate -s "${total}M" "$img.tmp"
    sgdisk -o -n "1:2048:+${root_mib}M" -t 1:8300 -c 1:root -n "2:-${cfg_mib}M:0" -t 2:0700 "$img.tmp" >/dev/null
    # sgdisk -q has been seen to write nothing and exit 0: check what is really there.
    sgdisk -p "$img.tmp" | grep -q '^ *2 ' || { echo "build-image: sgdisk wrote no partition 2" >&2; exit 1; }
    mkfs.ext4 -q -F -L root -d "$tree" -E offset=1048576 "$img.tmp" "${root_mib}M"
    mv "$img.tmp" "$img"
fi
start=$(sgdisk -i 2 "$img" | sed -n 's/^First sector: \([0-9]*\).*/\1/p')
end=$(sgdisk -i 2 "$img" | sed -n 's/^Last sector: \([0-9]*\).*/\1/p')
echo "$img $((start * 512)) $(((end - start + 1) * 512))"
