#!/bin/sh
# Builds the primer Debian package from this checkout: the release binary, the systemd units
# and preset, the documented default configuration, man pages and shell completions generated
# from the clap definitions, copyright and changelog. Prints the path of the .deb.
# Usage: packaging/build-deb.sh [OUTDIR]   (default: target/debian)
#
# Reproducible: the same checkout gives a byte-identical .deb (packaging/test-package.sh checks
# it): file times are clamped to SOURCE_DATE_EPOCH (default: the last commit's time), paths in
# the binary are remapped away from this machine's checkout and cargo home, the dependency
# versions come from Cargo.lock (--locked) and the build has its own target directory.
# The Maintainer field: PRIMER_MAINTAINER, default the project's address (README "Packaging").
set -eu
cd "$(dirname "$0")/.."
out=${1:-target/debian}
# PRIMER_DEB_VERSION and PRIMER_DEFAULT_CONFIG (the documented defaults file) exist for
# packaging/test-package.sh, which builds a "newer" package to upgrade to.
version=${PRIMER_DEB_VERSION:-$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)}
default_config=${PRIMER_DEFAULT_CONFIG:-packaging/primer.yaml}
arch=$(dpkg --print-architecture)
maintainer=${PRIMER_MAINTAINER:-primer maintainers <maintainers@users.noreply.h-seed-0ce2c0cf.example>}
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}
export SOURCE_DATE_EPOCH
cargo_home=${CARGO_HOME:-$HOME/.cargo}
# A static binary (`cargo build-static`, .cargo/config.toml): no libc dependency, runs on
# glibc-older guests. A RUSTFLAGS in the environment would replace the alias's target flags and
# silently give a dynamic binary, so the extra flags go in the target-scoped variable, which
# cargo adds to them (and which build scripts and proc-macros, built for the host, never get).
unset RUSTFLAGS CARGO_ENCODED_RUSTFLAGS
CARGO_TARGET_DIR=target/pkg \
    CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS="--remap-path-prefix=$(pwd)=/primer --remap-path-prefix=$cargo_home=/cargo -C link-arg=-Wl,-Map=target/pkg/primer.map,--no-demangle" \
    cargo build-static --locked --quiet
bin=target/pkg/x86_64-unknown-linux-gnu/release/primer
# The link placed the functions a boot runs together (packaging/hot-functions.txt, by symbol
# name): a list gone stale (renamed functions, another compiler) still builds the same binary,
# only with its boot code spread over more pages (~1 MiB more memory per run). Say how much of
# it this build still matched (the link map names every symbol laid out).
# (A build cargo found fresh writes no new map: the last one describes the same link.)
hot_listed=$(grep -vc '^#' packaging/hot-functions.txt || true)
hot_found=0
if [ -f target/pkg/primer.map ]; then
    hot_found=$(awk 'NR == FNR { if ($0 !~ /^#/) want[$0] = 1; next }
        ($NF in want) && !seen[$NF]++ { n++ } END { print n + 0 }' packaging/hot-functions.txt target/pkg/primer.map)
fi
if [ $((hot_found * 10)) -lt $((hot_listed * 9)) ] || [ "$hot_listed" -eq 0 ]; then
    echo "build-deb.sh: warning: only $hot_found of the $hot_listed functions in packaging/hot-functions.txt exist in this build: regenerate it (packaging/hot-functions.sh)" >&2
fi
if LC_ALL=C readelf -lW "$bin" | grep -q 'INTERP' || LC_ALL=C readelf -dW "$bin" | grep -q 'NEEDED'; then
    echo "build-deb.sh: $bin is not static (an interpreter or a shared library dependency)" >&2
    exit 1
fi
# Size guard. Issue 15's goal is 4 MiB (4,194,304 bytes); the binary met it (4,178,976 bytes at
# 55382a42) with packed relocations, no unwind tables and identical functions folded
# (.cargo/config.toml), mailparse's header words decoded without encoding_rs (vendor/charset),
# MBRs read without mbrman (src/media/part.rs), one shared sort (src/sort.rs) and primer's own
# process start on Linux (src/main.rs); static glibc alone is ~0.7 MB of it (README "The shipped
# binary: static glibc"). The streaming readers of the eleventh session (gzip'd and MIME user
# data, packed drives, JSON and plain-line carving, append chains) and the re-run fast path took
# it to 4,327,648 bytes, over the goal; it is back to 4,155,200 bytes at the size work
# (h10-size: the sort copies of four vendored crates, one copy of the settings deserializers,
# the ISO9660/FAT walks and signature reader through one `dyn` reader). The ceiling is now the
# goal itself, 4,096 KiB (4,194,304 bytes): nothing may cross it.
size_limit=$((4096 * 1024))
if [ "$(stat -c %s "$bin")" -gt "$size_limit" ]; then
    echo "build-deb.sh: $bin is $(stat -c %s "$bin") bytes, over the ${size_limit}-byte ceiling (issue 15's goal is 4 MiB)" >&2
    exit 1
fi
# The binary starts: its relative relocations are packed (DT_RELR, .cargo/config.toml), which
# only the start code of glibc >= 2.36 applies; one linked against an older libc6-dev would
# crash at start on every guest, and nothing else here runs it.
if ! "$bin" --version >/dev/null 2>&1; then
    echo "build-deb.sh: $bin does not start (built against glibc < 2.36? packed relocations need 2.36)" >&2
    exit 1
fi
# The C library linked into the binary, for Built-Using (its source is part of what ships).
libc_source=$(dpkg-query -W -f '${source:Package} (= ${source:Version})' libc6-dev)
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
cargo run --locked --quiet --example gen-assets -- "$stage/assets" >/dev/null

root="$stage/root"
install -D -m 0755 "$bin" "$root/usr/bin/primer"
install -D -m 0644 units/primer.service "$root/lib/systemd/system/primer.service"
install -D -m 0644 units/primer-scripts.service "$root/lib/systemd/system/primer-scripts.service"
install -D -m 0644 units/primer-reclaim.service "$root/lib/systemd/system/primer-reclaim.service"
install -D -m 0644 units/90-primer.preset "$root/lib/systemd/system-preset/90-primer.preset"
# The documented defaults; postinst copies them to /etc/primer/primer.yaml on first install
# only. Not a conffile: an upgrade never asks about it (settings belong in drop-ins).
install -D -m 0644 "$default_config" "$root/usr/share/primer/primer.yaml"
install -d -m 0755 "$root/etc/primer/primer.yaml.d"
mkdir -p "$root/usr/share/man/man1"
for m in "$stage"/assets/man/*.1; do
    gzip -9n <"$m" >"$root/usr/share/man/man1/$(basename "$m").gz"
done
install -D -m 0644 "$stage/assets/completions/primer.bash" "$root/usr/share/bash-completion/completions/primer"
install -D -m 0644 "$stage/assets/completions/_primer" "$root/usr/share/zsh/vendor-completions/_primer"
install -D -m 0644 "$stage/assets/completions/primer.fish" "$root/usr/share/fish/vendor_completions.d/primer.fish"
install -D -m 0644 README.md "$root/usr/share/doc/primer/README.md"
# lintian flags every static binary (usually a bug in Debian, where libraries are shared): here
# it is the point, primer must run on guests whose C library is older than the build's.
mkdir -p "$root/usr/share/lintian/overrides"
cat >"$root/usr/share/lintian/overrides/primer" <<'OVERRIDES'
# Static on purpose: a first-boot agent that runs on any x86_64 Linux guest, whatever its glibc
# (README "Performance"); it resolves no users or hosts through NSS.
primer: statically-linked-binary [usr/bin/primer]
# A static position-independent executable (static-pie, for address space randomisation) is an
# ELF shared object without DT_NEEDED entries: it needs no library by design.
primer: shared-library-lacks-prerequisites [usr/bin/primer]
OVERRIDES
chmod 0644 "$root/usr/share/lintian/overrides/primer"
{
    cat packaging/copyright
    echo
    echo "Comment: statically linked Rust crates (name, version, license expression), from"
    echo " Cargo.lock; each crate's copyright belongs to its authors. charset is primer's subset"
    echo " of the charset crate (vendor/charset); aho-corasick, annotate-snippets, gptman and"
    echo " mailparse are the published crates with their sorts changed (vendor/*/Cargo.toml)."
    cargo tree -e normal --prefix none --format '{p} {l}' --locked |
        sed 's/ (\*)$//; s/ (proc-macro)//; s| (/[^)]*)||; s|^| |' | LC_ALL=C sort -u | grep -v '^ primer v'
} >"$stage/copyright"
install -D -m 0644 "$stage/copyright" "$root/usr/share/doc/primer/copyright"
gzip -9n <packaging/changelog >"$root/usr/share/doc/primer/changelog.gz"
chmod 0644 "$root/usr/share/doc/primer/changelog.gz"

mkdir -p "$root/DEBIAN"
size=$(du -sk "$root" | cut -f1)
cat >"$root/DEBIAN/control" <<CONTROL
Package: primer
Version: $version
Architecture: $arch
Maintainer: $maintainer
Installed-Size: $size
Section: admin
Priority: optional
Built-Using: $libc_source
Description: first-boot agent for cloud config drives
 primer finds the configuration volume the cloud attached - an OpenStack or
 CloudStack config drive (ISO9660 or VFAT), an OVF environment, a NoCloud
 cidata seed, or Ironic's trailing partition on the boot disk - and reads it
 without mounting it, early in boot.
 .
 It applies network configuration (systemd-networkd, NetworkManager, ifupdown
 or netplan), host name, users, passwords and SSH keys, per-instance SSH host
 keys, user-data (cloud-config, scripts) and injected files, atomically, and
 keeps a private copy and a record per instance: a re-run changes nothing.
 Optionally it deletes the config partition and grows the root filesystem.
CONTROL
# Enable the unit the way debhelper does (works in a chroot, no running systemd needed).
cat >"$root/DEBIAN/postinst" <<'SCRIPT'
#!/bin/sh
set -e
if [ "$1" = configure ] && [ ! -e /etc/primer/primer.yaml ]; then
    # First install (or the file was removed): the documented defaults, all commented out.
    cp /usr/share/primer/primer.yaml /etc/primer/primer.yaml
fi
if [ "$1" = configure ] || [ "$1" = abort-upgrade ]; then
    for unit in primer.service primer-scripts.service primer-reclaim.service; do
        if deb-systemd-helper debian-installed "$unit"; then
            deb-systemd-helper unmask "$unit" >/dev/null || true
            if deb-systemd-helper --quiet was-enabled "$unit"; then
                deb-systemd-helper enable "$unit" >/dev/null || true
            else
                deb-systemd-helper update-state "$unit" >/dev/null || true
            fi
        else
            deb-systemd-helper enable "$unit" >/dev/null || true
        fi
    done
    if [ -d /run/systemd/system ]; then
        systemctl --system daemon-reload >/dev/null || true
    fi
fi
SCRIPT
cat >"$root/DEBIAN/postrm" <<'SCRIPT'
#!/bin/sh
set -e
if [ "$1" = remove ] && command -v deb-systemd-helper >/dev/null; then
    deb-systemd-helper mask primer.service primer-scripts.service primer-reclaim.service >/dev/null || true
fi
if [ "$1" = purge ] && command -v deb-systemd-helper >/dev/null; then
    deb-systemd-helper purge primer.service primer-scripts.service primer-reclaim.service >/dev/null || true
    deb-systemd-helper unmask primer.service primer-scripts.service primer-reclaim.service >/dev/null || true
    rm -rf /var/lib/primer
    # The file postinst created; an administrator's drop-ins are theirs and stay.
    rm -f /etc/primer/primer.yaml
    rmdir --ignore-fail-on-non-empty /etc/primer/primer.yaml.d /etc/primer 2>/dev/null || true
fi
if [ -d /run/systemd/system ]; then
    systemctl --system daemon-reload >/dev/null || true
fi
SCRIPT
chmod 0755 "$root/DEBIAN/postinst" "$root/DEBIAN/postrm"
(cd "$root" && find . -path ./DEBIAN -prune -o -type f -print | sed 's|^\./||' | LC_ALL=C sort |
    xargs md5sum) >"$root/DEBIAN/md5sums"
chmod 0644 "$root/DEBIAN/md5sums"
# Every time clamped (dpkg-deb also clamps member times to SOURCE_DATE_EPOCH).
find "$root" -newermt "@$SOURCE_DATE_EPOCH" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
mkdir -p "$out"
deb="$out/primer_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
echo "$deb"
