#!/bin/sh
# Whole-process benchmark of `primer run` (issue 15), as a boot runs it: the 11-NIC drive of
# ../shared/fixtures/os-glean-liberty built as a config-2 ISO and attached read-only on a loop
# device, the target root a directory on a journaled ext4 (itself on a loop device), networkd
# target. Runs primer's first run (fresh root each time) and re-run (same root, nothing changes)
# RUNS times and prints the medians of CPU time (user + system of the process, from wait4's
# rusage, microsecond resolution) and the peak RSS (GNU time); with `perf` and hardware counters,
# the median of the instructions too (user and kernel); and the system calls of one run.
#
#   benches/compare.sh [--runs N] [--peers] [--large] [BINARY]
#
#   BINARY   default: target/x86_64-unknown-linux-gnu/release/primer (the shipped static build,
#            `cargo build --release --target x86_64-unknown-linux-gnu`), else target/release/primer
#   --runs   runs per figure (default 20; RUNS in the environment works too)
#   --peers  also Debian's cloud-init (`apt-get download cloud-init`, unpacked with `dpkg -x` into
#            a scratch directory; its Python dependencies from Debian) and glean (PyPI, in a
#            venv), each run through its library path on the same drive into a scratch root, and
#            the ratios peer / primer from this same run. cloud-init and glean mount the drive
#            (this kernel may lack iso9660): they are given the drive's files extracted from the
#            same ISO, so their figures leave out reading the ISO, which primer's include.
#   --large  also a large drive: 32 MiB of user-data and 5,000 injected files (peak RSS, time)
#
# Needs root (loop devices, mount), genisoimage, mkfs.ext4, python3 (the timing helper), GNU time.
# The machine's other load shows in CPU time: run it on an idle machine for figures to quote.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
runs=${RUNS:-20}
peers=0
large=0
bin=
while [ $# -gt 0 ]; do
    case $1 in
    --runs) runs=$2; shift 2 ;;
    --peers) peers=1; shift ;;
    --large) large=1; shift ;;
    -h | --help) sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) bin=$1; shift ;;
    esac
done
if [ -z "$bin" ]; then
    for b in target/x86_64-unknown-linux-gnu/release/primer target/release/primer; do
        if [ -x "$here/$b" ]; then bin=$here/$b; break; fi
    done
fi
[ -n "$bin" ] && [ -x "$bin" ] || {
    echo "compare.sh: no primer binary (cargo build --release --target x86_64-unknown-linux-gnu)" >&2
    exit 1
}
bin=$(readlink -f "$bin")
[ "$(id -u)" = 0 ] || { echo "compare.sh: needs root (loop devices, mount)" >&2; exit 1; }
for t in genisoimage mkfs.ext4 losetup python3 /usr/bin/time; do
    command -v "$t" >/dev/null 2>&1 || { echo "compare.sh: $t is required" >&2; exit 1; }
done
fixture=${PRIMER_FIXTURE:-$here/../shared/fixtures/os-glean-liberty}
[ -d "$fixture/drive" ] || { echo "compare.sh: no fixture at $fixture" >&2; exit 1; }

work=$(mktemp -d /tmp/primer-compare.XXXXXX)
loops=
cleanup() {
    set +e
    mountpoint -q "$work/ext4" && umount "$work/ext4"
    for l in $loops; do losetup -d "$l"; done
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

# The timing helper: runs a command RUNS times (after an optional preparation command, not
# timed), and prints "median_cpu_ms min max peak_rss_kib median_instructions_u median_k
# median_wall_ms" (instructions 0 without perf, or with PERF=0).
cat >"$work/measure.py" <<'PY'
import os, shutil, statistics, subprocess, sys, time
runs, prep, ok = int(sys.argv[1]), sys.argv[2], {int(c) for c in sys.argv[3].split(",")}
cmd = sys.argv[4:]
perf = shutil.which("perf") if os.environ.get("PERF", "1") == "1" else None
if perf:  # a VM without hardware counters says "<not supported>": skip instead of timing perf
    o = subprocess.run([perf, "stat", "-x,", "-e", "instructions:u", "--", "true"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    perf = perf if o.returncode == 0 and "not supported" not in o.stderr else None
cpu, rss, iu, ik, wall = [], [], [], [], []
for _ in range(runs):
    if prep:
        subprocess.run(prep, shell=True, check=True)
    dn = os.open(os.devnull, os.O_RDWR)
    t0 = time.monotonic()
    pid = os.posix_spawnp(cmd[0], cmd, os.environ,
                          file_actions=[(os.POSIX_SPAWN_DUP2, dn, 0), (os.POSIX_SPAWN_DUP2, dn, 1),
                                        (os.POSIX_SPAWN_DUP2, dn, 2)])
    os.close(dn)
    _, status, ru = os.wait4(pid, 0)
    wall.append((time.monotonic() - t0) * 1000.0)
    code = os.waitstatus_to_exitcode(status)
    if code not in ok:
        sys.exit(f"{' '.join(cmd)}: exit {code}")
    cpu.append((ru.ru_utime + ru.ru_stime) * 1000.0)
    if perf:
        if prep:
            subprocess.run(prep, shell=True, check=True)
        o = subprocess.run([perf, "stat", "-x,", "-e", "instructions:u,instructions:k", "--"] + cmd,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for line in o.stderr.splitlines():
            f = line.split(",")
            if len(f) > 2 and f[0].isdigit():
                (iu if f[2].startswith("instructions:u") else ik).append(int(f[0]))
# Peak RSS from GNU time, not from this wait4: Linux carries the spawning process's high-water
# mark across exec, so the rusage here would report Python's RSS for any smaller child.
for _ in range(min(runs, 3)):
    if prep:
        subprocess.run(prep, shell=True, check=True)
    o = subprocess.run(["/usr/bin/time", "-f", "%M"] + cmd, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, text=True)
    last = o.stderr.strip().splitlines()[-1:] or ["0"]
    rss.append(int(last[0]) if last[0].isdigit() else 0)
med = lambda v: statistics.median(v) if v else 0
print(f"{med(cpu):.2f} {min(cpu):.2f} {max(cpu):.2f} {max(rss)} {med(iu):.0f} {med(ik):.0f} {med(wall):.1f}")
PY
measure() { python3 "$work/measure.py" "$@"; }
show() { # label "median min max rss iu ik wall"
    set -- "$1" $2
    printf '%-32s %8.2f ms CPU (%.2f-%.2f)  %7.1f ms wall  peak RSS %6d KiB' "$1" "$2" "$3" "$4" "$8" "$5"
    if [ "$6" != 0 ]; then printf '  instr %s u + %s k' "$6" "$7"; fi
    echo
}

# The drive: a config-2 ISO (Rock Ridge + Joliet, as nova builds it) on a read-only loop device.
mkdir -p "$work/tree"
cp -r "$fixture/drive/." "$work/tree/"
genisoimage -quiet -J -r -V config-2 -o "$work/drive.iso" "$work/tree"
drive=$(losetup --find --show --read-only "$work/drive.iso")
loops="$drive"
# The root: a directory on a journaled ext4 (data=ordered, the default), on a loop device.
truncate -s 256M "$work/ext4.img"
mkfs.ext4 -q -F -O has_journal "$work/ext4.img"
mkdir -p "$work/ext4"
mount -o loop "$work/ext4.img" "$work/ext4"
root=$work/ext4/root
fresh="rm -rf $root && mkdir -p $root/etc && echo 'root:x:0:0:root:/root:/bin/sh' >$root/etc/passwd"
sh -c "$fresh"

echo "primer: $bin ($(stat -c %s "$bin") bytes; $(file -b "$bin" | cut -d, -f1-2))"
echo "machine: $(nproc) cores, $(sed -n 's/^model name\t: //p' /proc/cpuinfo | head -n1), kernel $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "drive: $drive ($(basename "$fixture"), config-2 ISO), root: journaled ext4 on a loop device; $runs runs each"
run="$bin run --log-level error --network-backend networkd --source $drive --root $root"
# shellcheck disable=SC2086
first=$(measure "$runs" "$fresh" 0 $run)
show "primer first run" "$first"
sh -c "$fresh"
# shellcheck disable=SC2086
"$bin" run --log-level error --network-backend networkd --source "$drive" --root "$root" >/dev/null 2>&1 || true
# shellcheck disable=SC2086
rerun=$(measure "$runs" "" 0,10 $run)
show "primer re-run (nothing changes)" "$rerun"
# Load-independent: system calls of one run (strace -f -c), total and failed: a first run into a
# fresh root, the next run (it takes the full path and records the re-run cache), and an
# unchanged re-run (the fast path, as the re-run figure above measures). Two seconds apart: a
# run refuses to record the cache while the target's files are as new as its own start (a
# timestamp cannot tell a change made in the same tick).
if command -v strace >/dev/null 2>&1; then
    sh -c "$fresh"
    for which in first recording re-run; do
        [ "$which" = first ] || sleep 2
        # shellcheck disable=SC2086
        strace -f -c -o "$work/strace.txt" $run >/dev/null 2>&1 || true
        awk -v w="$which" '$NF == "total" { printf "primer %-9s system calls: %d (%d failed)\n", w, $4, (NF == 6 ? $5 : 0) }' "$work/strace.txt"
    done
fi

if [ "$peers" = 1 ]; then
    cache=${PRIMER_BENCH_CACHE:-/var/tmp/primer-bench}
    mkdir -p "$cache"
    # The drive's files as the peers see them after mounting it: extracted from the same ISO.
    peer=$work/peer
    mkdir -p "$peer/mnt/config"
    if command -v xorriso >/dev/null 2>&1; then
        xorriso -osirrox on -indev "$work/drive.iso" -extract / "$peer/mnt/config" >/dev/null 2>&1
    else
        cp -r "$work/tree/." "$peer/mnt/config/"
    fi
    # glean reads the NICs from <root>/sys/class/net: the fixture's MACs, as glean's own tests do.
    python3 - "$fixture/known_macs.json" "$peer/sys/class/net" <<'PY'
import json, os, sys
for mac, name in json.load(open(sys.argv[1])).items():
    d = os.path.join(sys.argv[2], name)
    os.makedirs(d, exist_ok=True)
    for f, v in (("address", mac), ("addr_assign_type", "0"), ("carrier", "1")):
        open(os.path.join(d, f), "w").write(v + "\n")
PY
    # cloud-init: Debian's package unpacked, never installed; its Python dependencies from Debian.
    ci_lib=$cache/cloud-init/usr/lib/python3/dist-packages
    if [ ! -d "$ci_lib/cloudinit" ]; then
        # (apt warns that it downloads as root into a directory _apt cannot write: harmless.)
        (cd "$cache" && rm -f cloud-init_*.deb && apt-get download -q cloud-init >/dev/null 2>&1)
        rm -rf "$cache/cloud-init"
        dpkg -x "$cache"/cloud-init_*.deb "$cache/cloud-init"
        deps=$(dpkg-deb -f "$cache"/cloud-init_*.deb Depends | tr ',|' '\n\n' |
            sed -n 's/^ *\(python3-[a-z0-9.-]*\).*/\1/p' | sort -u | tr '\n' ' ')
        # shellcheck disable=SC2086
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends python3 $deps >/dev/null
    fi
    # cloud-init's library path for a config drive, as its datasource runs it: read the drive
    # (ConfigDriveReader.read_v2), convert network_data.json (cloud-init ignores Liberty's
    # network_info.json, so on this drive that step finds nothing), render networkd into a
    # scratch root, and keep the instance data as JSON.
    cat >"$work/cloudinit_path.py" <<'PY'
import json, os, sys
from cloudinit.sources.helpers import openstack
mnt, macs, root = sys.argv[1], sys.argv[2], sys.argv[3]
results = openstack.ConfigDriveReader(mnt).read_v2()
net = results.get("networkdata")
if net:
    from cloudinit.net import networkd
    from cloudinit.net.network_state import parse_net_config_data
    cfg = openstack.convert_net_json(net, known_macs=json.load(open(macs)))
    networkd.Renderer({}).render_network_state(parse_net_config_data(cfg), target=root)
os.makedirs(os.path.join(root, "var/lib/cloud/instance"), exist_ok=True)
with open(os.path.join(root, "var/lib/cloud/instance/obj.json"), "w") as f:
    json.dump(results, f, default=repr)
PY
    ci="env PYTHONPATH=$ci_lib /usr/bin/python3 $work/cloudinit_path.py $peer/mnt/config $fixture/known_macs.json $work/ci-root"
    # shellcheck disable=SC2086
    ci_res=$(measure "$runs" "rm -rf $work/ci-root" 0 $ci)
    show "cloud-init library path" "$ci_res"
    # glean (PyPI, in a venv): its command with --noop (it writes to absolute /etc paths
    # otherwise), networkd output, the drive under <root>/mnt/config.
    if [ ! -x "$cache/glean/bin/glean" ]; then
        python3 -m venv "$cache/glean"
        "$cache/glean/bin/pip" install -q glean
    fi
    gl="$cache/glean/bin/glean --root $peer --distro networkd --noop --skip-dns"
    # shellcheck disable=SC2086
    gl_res=$(measure "$runs" "" 0 $gl)
    show "glean (--noop)" "$gl_res"
    p=${first%% *}
    awk -v p="$p" -v c="${ci_res%% *}" -v g="${gl_res%% *}" 'BEGIN {
        printf "ratio cloud-init / primer first run: %.1fx\n", c / p
        printf "ratio glean / primer first run:      %.1fx\n", g / p }'
fi

if [ "$large" = 1 ]; then
    # 32 MiB of user-data (a script, stored for later: --defer-scripts) and 5,000 injected files.
    big=$work/big
    mkdir -p "$big/openstack/latest" "$big/openstack/content"
    python3 - "$big" <<'PY'
import json, os, sys
d = sys.argv[1]
files = []
for i in range(5000):
    name = "%04x" % i
    with open(os.path.join(d, "openstack/content", name), "w") as f:
        f.write("injected file %d\n" % i)
    files.append({"path": "/srv/injected/f%04d" % i, "content_path": "/content/" + name})
json.dump({"uuid": "bench-large", "hostname": "large", "files": files},
          open(os.path.join(d, "openstack/latest/meta_data.json"), "w"))
with open(os.path.join(d, "openstack/latest/user_data"), "w") as f:
    f.write("#!/bin/sh\n")
    line = "# " + "x" * 76 + "\n"
    f.write(line * ((32 << 20) // len(line)))
    f.write("true\n")
PY
    genisoimage -quiet -J -r -V config-2 -o "$work/big.iso" "$big"
    bigdev=$(losetup --find --show --read-only "$work/big.iso")
    loops="$loops $bigdev"
    lr=$(( runs < 5 ? runs : 5 ))
    run="$bin run --log-level error --defer-scripts --network-backend networkd --source $bigdev --root $root"
    # shellcheck disable=SC2086
    big_first=$(PERF=0 measure "$lr" "$fresh" 0 $run)
    show "large drive first run" "$big_first"
    # shellcheck disable=SC2086
    big_rerun=$(PERF=0 measure "$lr" "" 0,10 $run)
    show "large drive re-run" "$big_rerun"
fi
