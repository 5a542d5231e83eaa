#!/bin/sh
# The README's demo: runs primer on the bundled sample drive (images/sample/config-2.iso, an
# OpenStack config drive built by build.sh) into a scratch root, twice, and shows the result.
set -eu
cd "$(dirname "$0")/../.."
root=${1:-/tmp/primer-demo}
rm -rf "$root"
mkdir -p "$root/etc"
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$root/etc/passwd"
printf '127.0.0.1\tlocalhost\n' >"$root/etc/hosts"

cargo build --release --quiet
bin=target/release/primer

echo "== primer show --source images/sample/config-2.iso"
$bin show --source images/sample/config-2.iso
echo
echo "== primer run --source images/sample/config-2.iso --root $root"
$bin run --log-level warn --source images/sample/config-2.iso --root "$root" || true
echo
echo "== again: nothing to do (exit 10)"
$bin run --log-level warn --source images/sample/config-2.iso --root "$root" || echo "exit $?"
echo
echo "== result in $root"
for f in etc/hostname etc/hosts root/.ssh/authorized_keys; do
    echo "-- /$f"
    cut -c1-100 "$root/$f"
done
echo "-- files"
find "$root" -type f -printf '%m %u %p\n' | sed "s|$root||" | sort -k3
