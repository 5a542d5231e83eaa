#!/bin/sh
# Benchmark of `primer reclaim` on a 10 GiB sparse GPT disk image with a 64 MiB config partition
# right after root (the test-vm layout, Ironic's size): plan (dry run: read the table, hash the
# config drive), then --apply (re-check, table write in crash-safe order, zeroing the old config
# range, 64 MiB). Prints wall-clock milliseconds of each, median of RUNS runs (default 5).
# Usage: benches/reclaim.sh [PRIMER_BINARY]   (default: target/release/primer, else debug)
set -eu
cd "$(dirname "$0")/.."
bin="${1:-}"
if [ -z "$bin" ]; then
    if [ -x target/release/primer ]; then bin=target/release/primer; else bin=target/debug/primer; fi
fi
runs="${RUNS:-5}"
for t in sgdisk genisoimage; do
    command -v "$t" >/dev/null 2>&1 || { echo "benches/reclaim.sh: $t is required" >&2; exit 1; }
done
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/tree/openstack/latest" "$work/root/etc/primer"
printf '{"uuid":"bench-1","hostname":"bench"}\n' >"$work/tree/openstack/latest/meta_data.json"
genisoimage -quiet -J -r -V config-2 -o "$work/cfg.iso" "$work/tree"
printf 'reclaim:\n  enabled: true\n' >"$work/root/etc/primer/primer.yaml"

ms() { date +%s%3N; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

: >"$work/plan.txt"
: >"$work/apply.txt"
i=0
while [ "$i" -lt "$runs" ]; do
    i=$((i + 1))
    img="$work/disk.img"
    rm -f "$img"
    truncate -s 10G "$img"
    sgdisk -n 1:2048:-66M -t 1:8300 -n 2:0:0 -t 2:0700 "$img" >/dev/null
    start=$(sgdisk -i 2 "$img" | awk '/First sector/ {print $3}')
    dd if="$work/cfg.iso" of="$img" bs=512 seek="$start" conv=notrunc status=none
    rm -rf "$work/root/var"
    "$bin" run --source "$img" --root "$work/root" >/dev/null 2>&1
    sync
    t0=$(ms)
    "$bin" reclaim --disk "$img" --root-partition 1 --root "$work/root" >/dev/null 2>&1
    t1=$(ms)
    "$bin" reclaim --disk "$img" --root-partition 1 --root "$work/root" --apply >/dev/null 2>&1
    t2=$(ms)
    echo $((t1 - t0)) >>"$work/plan.txt"
    echo $((t2 - t1)) >>"$work/apply.txt"
    sgdisk -v "$img" | grep -q "No problems found" || { echo "sgdisk -v: problems" >&2; exit 1; }
done
echo "reclaim, 10 GiB sparse GPT image, 64 MiB config partition ($bin, median of $runs):"
echo "  plan (dry run)          $(median <"$work/plan.txt") ms"
echo "  apply (table + wipe)    $(median <"$work/apply.txt") ms"
