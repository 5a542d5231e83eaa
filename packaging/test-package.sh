#!/bin/sh
# The package as an operator meets it (README "Packaging"): builds the .deb, then checks
#  1. lintian: no error and no warning;
#  2. reproducible: the primer crate rebuilt from scratch gives a byte-identical .deb;
#  3. install, then upgrade over an edited configuration, non-interactively, in a Debian
#     chroot (the guest tests' cached rootfs): the main file is edited and a drop-in added, the
#     newer package ships different defaults, `dpkg -i` with no terminal succeeds and both
#     settings hold (`primer config show`); then purge removes primer's files, not the
#     administrator's drop-in.
# Needs root (chroot) and the tools scripts/test installs. Prints one line per check.
set -eu
cd "$(dirname "$0")/.."
command -v lintian >/dev/null 2>&1 || {
    apt-get -o DPkg::Lock::Timeout=300 update -qq
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq lintian
}
work=$(mktemp -d)
cleanup() {
    for m in proc dev; do umount "$work/root/$m" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

a=$(packaging/build-deb.sh "$work/a")
echo "built $a ($(stat -c %s "$a") bytes)"

# 1. lintian. Suppressed, each for a reason:
#  - none here; the package itself overrides statically-linked-binary and
#    shared-library-lacks-prerequisites for usr/bin/primer (static-pie on purpose, see
#    packaging/build-deb.sh), with its reason in the override file.
lintian --fail-on error,warning --tag-display-limit 0 "$a"
echo "lintian: clean"

# 2. Reproducible: rebuild the primer crate itself (dependencies are reused) and package again.
CARGO_TARGET_DIR=target/pkg cargo clean --release --quiet -p primer --target x86_64-unknown-linux-gnu
b=$(packaging/build-deb.sh "$work/b")
cmp "$a" "$b"
echo "reproducible: $(sha256sum <"$a" | cut -c1-16) twice"

# 3. Install and upgrade in a chroot.
rootfs=$(images/test-vm/build-rootfs.sh base)
mkdir "$work/root"
tar --zstd -xpf "$rootfs" -C "$work/root"
mount --bind /proc "$work/root/proc"
mount --bind /dev "$work/root/dev"
r=$work/root
cp "$a" "$r/tmp/old.deb"
chroot "$r" dpkg -i /tmp/old.deb </dev/null >"$work/install.log" 2>&1 || {
    cat "$work/install.log"
    exit 1
}
[ -f "$r/etc/primer/primer.yaml" ] || { echo "install: /etc/primer/primer.yaml not created"; exit 1; }
# The administrator edits the main file and adds a drop-in.
printf 'probe:\n  wait_seconds: 7\n' >>"$r/etc/primer/primer.yaml"
printf 'reclaim:\n  enabled: true\n' >"$r/etc/primer/primer.yaml.d/50-site.yaml"
# A newer package whose documented defaults differ.
sed 's/^# ssh_user: root /# ssh_user: root (changed in 0.1.1) /' packaging/primer.yaml >"$work/primer.yaml"
new=$(PRIMER_DEB_VERSION=0.1.1 PRIMER_DEFAULT_CONFIG="$work/primer.yaml" packaging/build-deb.sh "$work/new")
cp "$new" "$r/tmp/new.deb"
chroot "$r" dpkg -i /tmp/new.deb </dev/null >"$work/upgrade.log" 2>&1 || {
    cat "$work/upgrade.log"
    echo "upgrade: dpkg -i failed"
    exit 1
}
chroot "$r" dpkg-query -W -f '${Version} ${Status}\n' primer | grep -qx '0.1.1 install ok installed'
show=$(chroot "$r" primer config show)
echo "$show" | grep -q '^probe.wait_seconds: 7.0  # /etc/primer/primer.yaml$' ||
    { echo "upgrade: the edited main file was lost:"; echo "$show"; exit 1; }
echo "$show" | grep -q '^reclaim.enabled: true  # /etc/primer/primer.yaml.d/50-site.yaml$' ||
    { echo "upgrade: the drop-in was lost:"; echo "$show"; exit 1; }
echo "upgrade over an edited configuration: both settings hold, no prompt"

chroot "$r" dpkg --purge primer </dev/null >"$work/purge.log" 2>&1 || { cat "$work/purge.log"; exit 1; }
[ ! -e "$r/usr/bin/primer" ] && [ ! -e "$r/etc/primer/primer.yaml" ] ||
    { echo "purge: primer's files remain"; exit 1; }
[ -f "$r/etc/primer/primer.yaml.d/50-site.yaml" ] ||
    { echo "purge: removed the administrator's drop-in"; exit 1; }
echo "purge: primer's files removed, the administrator's drop-in kept"
