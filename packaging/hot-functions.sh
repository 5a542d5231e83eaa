#!/usr/bin/env bash
# Regenerates packaging/hot-functions.txt: the functions a boot's `primer run` executes, sorted
# by name (a regenerated list diffs by what changed; their order hardly matters, a run touches
# the whole hot region). The static link (.cargo/config.toml, `--symbol-ordering-file`) places
# them together at the start of the text, so a run maps about 1.2 MB of code instead of nearly
# all 3.4 MB (the kernel maps a file's pages 64 KiB around each first touch): less memory
# and fewer page faults on every boot. Names that no longer exist (code changed, another
# compiler) are skipped by the linker: a stale list costs only locality, never correctness;
# `packaging/build-deb.sh` reports how much of it still matches.
#
# Usage: packaging/hot-functions.sh [OUT]   (root: the runs need loop devices; valgrind)
# The workloads are the boot's own paths on the repository's fixtures (tests/fixtures): an
# OpenStack drive as ISO9660 found by the scan on a loop device (first run, the recording
# re-run, the fast path) and as VFAT, the network fixtures under each backend, NoCloud with
# each kind of user-data, CloudStack, OVF. (`primer scripts` runs only on a live root.)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-packaging/hot-functions.txt}
for t in valgrind genisoimage mkfs.vfat mcopy losetup python3; do
    command -v "$t" >/dev/null || { echo "hot-functions: needs $t" >&2; exit 1; }
done
# The symbol names must be the shipped build's: same profile and target, so the same
# `-C metadata` (cargo leaves rustflags out of it; `-C strip=none` only keeps the names).
CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS="-C strip=none" \
    cargo build-static --locked --quiet --target-dir target/hot
bin=$(pwd)/target/hot/x86_64-unknown-linux-gnu/release/primer
work=$(mktemp -d /tmp/primer-hot.XXXXXX)
loops=()
cleanup() {
    for l in "${loops[@]}"; do losetup -d "$l" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT
fx=tests/fixtures

iso() { # iso NAME LABEL TREE
    genisoimage -quiet -J -r -V "$2" -o "$work/$1.iso" "$3"
}
vfat() { # vfat NAME LABEL TREE
    truncate -s 8M "$work/$1.img"
    mkfs.vfat -n "$2" "$work/$1.img" >/dev/null
    (cd "$3" && mcopy -s -i "$work/$1.img" ./* ::/)
}
newroot() { # newroot NAME: a root with the account files a booted image has
    mkdir -p "$work/$1/etc"
    cp /etc/passwd /etc/group "$work/$1/etc/"
    grep -E '^root:' /etc/shadow >"$work/$1/etc/shadow" || true
    echo "$work/$1"
}
n=0
prof() { # prof ARGS...: one run under callgrind
    n=$((n + 1))
    local rc=0
    valgrind --tool=callgrind --demangle=no --callgrind-out-file="$work/cg.$n" \
        "$bin" "$@" >/dev/null 2>"$work/err.$n" || rc=$?
    # 0: applied; 10: nothing to do (the fast path). Anything else profiles a failure path.
    case $rc in
    0 | 10) ;;
    *)
        echo "hot-functions: run $n ($*) exited $rc:" >&2
        grep -v '^==' "$work/err.$n" | tail -n 5 >&2
        exit 1
        ;;
    esac
}
run() { prof run --log-level error --defer-scripts "$@"; }

iso os config-2 "$fx/openstack/full-latest/drive"
vfat osfat CONFIG-2 "$fx/openstack/full-latest/drive"
iso cs config-2 "$fx/cloudstack/merged/drive"
mkdir -p "$work/ovf"
cp "$fx/ovf/full/ovf-env.xml" "$work/ovf/"
iso ovf "OVF ENV" "$work/ovf"
# NoCloud seeds: the full fixture, then its meta-data with each kind of user-data and the
# network-config versions.
nocloud() { # nocloud NAME USER-DATA [NETWORK-CONFIG]
    mkdir -p "$work/$1"
    cp "$fx/nocloud/full/drive/meta-data" "$work/$1/"
    cp "$2" "$work/$1/user-data"
    [ -z "${3:-}" ] || cp "$3" "$work/$1/network-config"
    iso "$1" cidata "$work/$1"
}
mkdir -p "$work/nc"
cp "$fx/nocloud/full/drive/"* "$work/nc/"
iso nc cidata "$work/nc"
uds=()
for u in cloud-config-full multipart-mixed gzip-multipart script users write-files; do
    nocloud "ud-$u" "$fx/userdata/$u/user-data"
    uds+=("ud-$u")
done
nocloud v1 "$fx/userdata/script/user-data" "$fx/network/v1-bond-vlan/network-config"
nocloud v2 "$fx/userdata/script/user-data" "$fx/network/v2-bond-vlan-bridge/network-config"
# OpenStack drives with the network fixtures' network_data.json.
nets=()
for d in bond-lacp-vlan multi-nic-routes static-v4-v6 dhcpv6-stateful-stateless; do
    cp -r "$fx/openstack/full-latest/drive" "$work/tree-$d"
    cp "$fx/network/$d/network_data.json" "$work/tree-$d/openstack/latest/network_data.json"
    iso "net-$d" config-2 "$work/tree-$d"
    nets+=("net-$d")
done

# The boot's path: the drive found by the scan on a block device; the first run, the
# recording re-run (a later second: a run in the same second is not vouched for), the fast path.
# The scan reads every block device of this machine: on one with a config drive of its own (a
# cloud VM) the drive is named instead, so the profile never reads this machine's metadata.
l=$(losetup -f --show -r "$work/os.iso")
loops+=("$l")
r=$(newroot os)
found=$("$bin" probe --json 2>/dev/null |
    python3 -c 'import json, sys; print(" ".join(c["device"]["path"] for c in json.load(sys.stdin)["candidates"]))')
if [ "$found" = "$l" ]; then
    src=()
else
    echo "hot-functions: this machine has config drives of its own ($found): naming $l" >&2
    src=(--source "$l")
fi
run --root "$r" --network-backend networkd "${src[@]}"
sleep 1.2
run --root "$r" --network-backend networkd "${src[@]}"
run --root "$r" --network-backend networkd "${src[@]}"
losetup -d "$l"
loops=()
l=$(losetup -f --show -r "$work/osfat.img")
loops+=("$l")
run --root "$(newroot osfat)" --network-backend networkd --source "$l"
for b in networkd eni netplan networkmanager; do
    for d in os "${nets[@]}" v1 v2; do
        run --root "$(newroot "$d-$b")" --network-backend "$b" --source "$work/$d.iso"
    done
done
for d in nc cs ovf "${uds[@]}"; do
    run --root "$(newroot "$d")" --network-backend networkd --source "$work/$d.iso"
done

# Every function the profiles name (each once).
for i in $(seq 1 "$n"); do
    # A function is named once, where it first appears (`fn=(id) name` or `cfn=(id) name`);
    # `'N` marks a recursion level.
    sed -n "s/^c\{0,1\}fn=([0-9]*) \([A-Za-z_][A-Za-z0-9_.\$]*\)\('[0-9]*\)\{0,1\}$/\1/p" "$work/cg.$i"
done | LC_ALL=C sort -u >"$work/list"
{
    echo "# Generated by packaging/hot-functions.sh: the functions primer's boot runs execute,"
    echo "# laid out together by the static link (.cargo/config.toml). Regenerate after large"
    echo "# changes or a compiler update (build-deb.sh reports how much still matches)."
    cat "$work/list"
} >"$out"
echo "hot-functions: $(wc -l <"$work/list") functions from $n profiles -> $out"
