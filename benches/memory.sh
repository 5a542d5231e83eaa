#!/bin/sh
# Memory and scaling of `primer run` on large drives (issue 15): peak RSS for 32 and 64 MiB of
# user-data (a shell script, stored for later with --defer-scripts) and of a cloud-config
# `write_files` entry, and CPU/wall time and peak RSS for 1,000 / 5,000 / 9,000 injected files
# (OpenStack `files`; a drive holds at most 10,000 entries, media::Limits, so 20,000 is refused by
# design). Each drive is a config-2 ISO image file (genisoimage -J -r, as nova builds it) read by
# primer's user-space reader, except fat64: the 64 MiB script on a 72 MiB VFAT image (mkfs.vfat
# then mcopy, as nova's config_drive_format=vfat builds it), and packed64: that ISO gzip'd and
# base64'd (Ironic's packed form) given as the source file. The user-data forms: udgz64 a gzip'd
# script, mime64 a MIME multipart (a cloud-config part and a base64 script part), wfjson64 one
# write_files entry as a JSON string (`\n` escapes, as Terraform's jsonencode writes it),
# wfmany64 2,000 write_files entries of 32 KiB literal blocks, append64 a 32 MiB `append` entry
# onto a 32 MiB existing file, manywf10k 10,000 write_files entries of ~6.5 KiB, vlans14k a
# `network_data.json` of a NIC and 13,999 chained VLANs (897 KB, under its 1 MiB cap; 28,000
# networkd files). Each run goes into a fresh root. Peak RSS comes from GNU time
# (load-independent); times are medians and depend on the machine's load.
#
#   benches/memory.sh [--runs N] [--only NAMES] [BINARY]
#
#   BINARY  default target/x86_64-unknown-linux-gnu/release/primer, else target/release/primer
#   --runs  runs per figure (default 3)
#   --only  comma-separated figures (ud32,ud64,wf32,wf64,files1000,files5000,files9000,fat64,
#           packed64,udgz64,mime64,wfjson64,wfmany64,append64,manywf10k,vlans14k)
#
# Needs genisoimage, python3, gzip, base64 and GNU time (/usr/bin/time); fat64 also mkfs.vfat and
# mcopy (dosfstools, mtools); not root. Uses ~400 MiB in $TMPDIR.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
runs=3
only=
bin=
while [ $# -gt 0 ]; do
    case $1 in
    --runs) runs=$2; shift 2 ;;
    --only) only=$2; shift 2 ;;
    -h | --help) sed -n '2,26p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) bin=$1; shift ;;
    esac
done
if [ -z "$bin" ]; then
    for b in target/x86_64-unknown-linux-gnu/release/primer target/release/primer; do
        if [ -x "$here/$b" ]; then bin=$here/$b; break; fi
    done
fi
[ -n "$bin" ] && [ -x "$bin" ] || { echo "memory.sh: no primer binary (cargo build --release)" >&2; exit 1; }
bin=$(readlink -f "$bin")
for t in genisoimage python3 /usr/bin/time; do
    command -v "$t" >/dev/null 2>&1 || { echo "memory.sh: $t is required" >&2; exit 1; }
done
work=$(mktemp -d "${TMPDIR:-/tmp}/primer-memory.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM
# Peak RSS counts the binary's own pages that the kernel maps around each page fault, and it
# maps only pages already in the page cache: the same binary measured 0.2-0.5 MiB apart
# depending on how much of its file was cached (measured: a fresh copy, fully cached, and the
# same file after `drop_caches`). A fresh copy of the binary puts every measured binary in the
# same state: fully cached.
cp "$bin" "$work/primer"
shown=$bin
bin=$work/primer

# make_drive NAME KIND ARG [FS]: a config-2 tree then its image ($work/NAME.iso: ISO9660, or
# with FS vfat a FAT image of ARG + 8 MiB), tree removed.
make_drive() {
    python3 - "$work/$1" "$2" "$3" <<'PY'
import base64, gzip, json, os, sys
d, kind, arg = sys.argv[1], sys.argv[2], int(sys.argv[3])
os.makedirs(os.path.join(d, "openstack/latest"))
md = {"uuid": "bench-" + os.path.basename(d), "hostname": "large"}
line = "# " + "x" * 76 + "\n"
ud = os.path.join(d, "openstack/latest/user_data")
if kind == "userdata":  # ARG MiB of shell script, just under the 64 MiB file cap
    with open(ud, "w") as f:
        f.write("#!/bin/sh\n")
        f.write(line * (((arg << 20) - 64) // len(line)))
        f.write("true\n")
elif kind == "writefiles":  # one write_files entry of ARG MiB (a YAML literal block)
    with open(ud, "w") as f:
        f.write("#cloud-config\nwrite_files:\n  - path: /srv/big\n    content: |\n")
        body = "      " + "y" * 72 + "\n"
        f.write(body * (((arg << 20) - 128) // len(body)))
elif kind == "gzscript":  # ARG MiB of shell script, gzip'd
    body = b"#!/bin/sh\n" + (line * (((arg << 20) - 64) // len(line))).encode() + b"true\n"
    with open(ud, "wb") as f:
        f.write(gzip.compress(body, 6))
elif kind == "mime":  # a cloud-config part and a base64 script part of ~ARG MiB in all
    script = b"#!/bin/sh\n" + (line * ((((arg << 20) * 72 // 100) - 4096) // len(line))).encode()
    b64 = base64.encodebytes(script).decode()
    with open(ud, "w") as f:
        f.write('Content-Type: multipart/mixed; boundary="==BOUNDARY=="\nMIME-Version: 1.0\n\n')
        f.write('--==BOUNDARY==\nContent-Type: text/cloud-config; charset="us-ascii"\n\n')
        f.write("#cloud-config\nruncmd:\n  - [true]\n\n")
        f.write('--==BOUNDARY==\nContent-Type: text/x-shellscript; charset="us-ascii"\n')
        f.write("Content-Transfer-Encoding: base64\n\n")
        f.write(b64)
        f.write("\n--==BOUNDARY==--\n")
elif kind == "jsonwf":  # one write_files entry of ARG MiB as a JSON string
    content = ("z" * 72 + "\n") * (((arg << 20) - 256) // 74)
    doc = {"write_files": [{"path": "/srv/big", "content": content}]}
    with open(ud, "w") as f:
        f.write("#cloud-config\n")
        json.dump(doc, f)
elif kind == "manywf":  # ARG MiB of write_files entries, 32 KiB literal blocks each
    with open(ud, "w") as f:
        f.write("#cloud-config\nwrite_files:\n")
        body = "      " + "w" * 72 + "\n"
        for i in range((arg << 20) // (32 << 10) - 1):
            f.write("  - path: /srv/many/f%05d\n    content: |\n" % i)
            f.write(body * ((32 << 10) // len(body)))
elif kind == "manywfn":  # ARG write_files entries sharing ~64 MiB (10,000: ~6.5 KiB each)
    with open(ud, "w") as f:
        f.write("#cloud-config\nwrite_files:\n")
        body = "      " + "w" * 72 + "\n"
        for i in range(arg):
            f.write("  - path: /srv/many/f%05d\n    content: |\n" % i)
            f.write(body * (((64 << 20) // arg - 48) // len(body)))
elif kind == "vlans":  # a NIC and a chain of ARG - 1 VLANs, each on the one before (network_data.json)
    links = [{"id": "t", "type": "phy", "ethernet_mac_address": "52:54:00:aa:00:01"}]
    for i in range(1, arg):
        parent = "t" if i == 1 else "v%d" % (i - 1)
        links.append({"id": "v%d" % i, "type": "vlan", "vlan_link": parent, "vlan_id": i % 4000 + 1})
    with open(os.path.join(d, "openstack/latest/network_data.json"), "w") as f:
        json.dump({"links": links, "networks": [], "services": []}, f, separators=(",", ":"))
elif kind == "append":  # an append entry of ARG/2 MiB onto an existing ARG/2 MiB file
    with open(ud, "w") as f:
        f.write("#cloud-config\nwrite_files:\n  - path: /srv/big\n    append: true\n    content: |\n")
        body = "      " + "a" * 72 + "\n"
        f.write(body * (((arg << 19) - 128) // len(body)))
    with open(d + ".target", "w") as f:
        f.write(("t" * 79 + "\n") * ((arg << 19) // 80))
elif kind == "files":  # ARG injected files
    os.makedirs(os.path.join(d, "openstack/content"))
    files = []
    for i in range(arg):
        name = "%04x" % i
        with open(os.path.join(d, "openstack/content", name), "w") as f:
            f.write("injected file %d\n" % i)
        files.append({"path": "/srv/injected/f%05d" % i, "content_path": "/content/" + name})
    md["files"] = files
json.dump(md, open(os.path.join(d, "openstack/latest/meta_data.json"), "w"))
PY
    if [ "${4:-}" = vfat ]; then
        for t in mkfs.vfat mcopy; do
            command -v "$t" >/dev/null 2>&1 || { echo "memory.sh: $t is required" >&2; exit 1; }
        done
        truncate -s "$(($3 + 8))M" "$work/$1.iso"
        mkfs.vfat -n config-2 "$work/$1.iso" >/dev/null 2>&1
        MTOOLS_SKIP_CHECK=1 mcopy -s -i "$work/$1.iso" "$work/$1/openstack" ::/
    else
        genisoimage -quiet -J -r -V config-2 -o "$work/$1.iso" "$work/$1"
    fi
    if [ "${4:-}" = packed ]; then
        gzip -c "$work/$1.iso" | base64 >"$work/$1.packed"
        mv "$work/$1.packed" "$work/$1.iso"
    fi
    rm -rf "${work:?}/$1"
}

# measure NAME: RUNS first runs (fresh root each), then RUNS re-runs (same root); prints
# "first: cpu_ms wall_ms rss_kib  re-run: cpu_ms wall_ms rss_kib" (medians, peak RSS max).
measure() {
    root=$work/root
    for phase in first rerun; do
        : >"$work/times"
        i=0
        while [ "$i" -lt "$runs" ]; do
            if [ "$phase" = first ]; then
                rm -rf "$root"
                mkdir -p "$root/etc"
                echo 'root:x:0:0:root:/root:/bin/sh' >"$root/etc/passwd"
                # The group too: a write_files entry owned by root:root is refused (a warning,
                # nothing written) on a root whose group file does not name root.
                echo 'root:x:0:' >"$root/etc/group"
                if [ -f "$work/$1.target" ]; then
                    mkdir -p "$root/srv"
                    cp "$work/$1.target" "$root/srv/big"
                fi
            fi
            /usr/bin/time -o "$work/t" -f "%U %S %e %M" "$bin" run --log-level error \
                --defer-scripts --network-backend networkd --source "$work/$1.iso" \
                --root "$root" >/dev/null 2>&1 || {
                c=$?
                # 10: already applied (a re-run that changes nothing).
                [ "$c" = 10 ] || { echo "memory.sh: $1: primer exit $c" >&2; exit 1; }
            }
            tail -n1 "$work/t" >>"$work/times"
            i=$((i + 1))
        done
        python3 - "$work/times" <<'PY'
import statistics, sys
rows = [list(map(float, l.split())) for l in open(sys.argv[1]) if l.strip()]
cpu = statistics.median((u + s) * 1000 for u, s, _, _ in rows)
wall = statistics.median(e * 1000 for _, _, e, _ in rows)
print(f"{cpu:8.0f} ms CPU {wall:8.0f} ms wall {max(r[3] for r in rows) / 1024:7.1f} MiB", end="  ")
PY
    done
    echo
}

echo "primer: $shown (measured as a fresh copy: fully in the page cache)"
echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); $runs runs each; first run | re-run"
for spec in "ud32 userdata 32" "ud64 userdata 64" "wf32 writefiles 32" "wf64 writefiles 64" \
    "files1000 files 1000" "files5000 files 5000" "files9000 files 9000" \
    "fat64 userdata 64 vfat" "packed64 userdata 64 packed" "udgz64 gzscript 64" \
    "mime64 mime 64" "wfjson64 jsonwf 64" "wfmany64 manywf 64" "append64 append 64" "manywf10k manywfn 10000" "vlans14k vlans 14000"; do
    # shellcheck disable=SC2086
    set -- $spec
    case ",${only:-$1}," in *",$1,"*) ;; *) continue ;; esac
    make_drive "$1" "$2" "$3" "${4:-}"
    printf '%-11s ' "$1"
    measure "$1"
    rm -f "$work/$1.iso" "$work/$1.target"
done
