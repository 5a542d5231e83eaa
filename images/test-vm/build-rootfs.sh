#!/bin/sh
# Builds (or reuses) the cached Debian rootfs tarball of a variant and prints its path.
# Usage: build-rootfs.sh [base|cloudinit|ifupdown|nm]
set -eu
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
variant=${1:-base}
pkgs="$BASE_PACKAGES$(variant_packages "$variant")"
key=$(hash_of "$SUITE $pkgs $(cat "$here/build-rootfs.sh")")
out="$PRIMER_VM_CACHE/rootfs-$variant-$key.tar.zst"
if [ ! -s "$out" ]; then
    mkdir -p "$PRIMER_VM_CACHE"
    echo "build-rootfs: mmdebstrap $SUITE ($variant) -> $out" >&2
    # merged-usr hook: without it, minbase pulls perl (+183 MB). No recommends keeps it small.
    mmdebstrap --quiet --variant=minbase --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
        --aptopt='APT::Install-Recommends "false"' \
        --include="$pkgs" "$SUITE" "$out.tmp.tar.zst" "$MIRROR" >&2
    mv "$out.tmp.tar.zst" "$out"
fi
echo "$out"
