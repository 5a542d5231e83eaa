#!/bin/sh
# Installs what the VM tests need on a Debian 12 host (CI or a developer machine): QEMU from
# bookworm-backports (the host's qemu-utils comes from there; bookworm's qemu-system-x86 7.2
# conflicts with it), mmdebstrap, busybox-static for the initrd, e2fsprogs, gdisk, genisoimage,
# openssh-client, kmod, zstd; for the reclaim guests sfdisk (MBR), xfsprogs and btrfs-progs
# (XFS/btrfs roots and their checkers), binutils (objcopy strips the test build). Idempotent:
# does nothing when everything is present.
set -eu
need=""
for pair in qemu-system-x86_64:qemu-system-x86 mmdebstrap:mmdebstrap busybox:busybox-static \
    mkfs.ext4:e2fsprogs debugfs:e2fsprogs sgdisk:gdisk genisoimage:genisoimage ssh:openssh-client \
    depmod:kmod zstd:zstd cpio:cpio qemu-img:qemu-utils sfdisk:fdisk mkfs.xfs:xfsprogs \
    mkfs.btrfs:btrfs-progs objcopy:binutils; do
    cmd=${pair%%:*}
    pkg=${pair#*:}
    if [ "$cmd" = busybox ]; then
        [ -x /bin/busybox ] && dpkg -s busybox-static >/dev/null 2>&1 && continue
    elif command -v "$cmd" >/dev/null 2>&1; then
        continue
    fi
    need="$need $pkg"
done
[ -z "$need" ] && exit 0
echo "setup-host: installing:$need"
if ! grep -rqs bookworm-backports /etc/apt/sources.list /etc/apt/sources.list.d/; then
    printf 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
        >/etc/apt/sources.list.d/primer-backports.sources
fi
export DEBIAN_FRONTEND=noninteractive
apt-get -o DPkg::Lock::Timeout=300 update -qq
backports=""
rest=""
for p in $need; do
    case "$p" in qemu-system-x86|qemu-utils) backports="$backports $p" ;; *) rest="$rest $p" ;; esac
done
# shellcheck disable=SC2086
[ -n "$backports" ] && apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends -t bookworm-backports $backports
# shellcheck disable=SC2086
[ -n "$rest" ] && apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends $rest
exit 0
