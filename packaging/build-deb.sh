#!/bin/sh
# Builds the primer Debian package from this checkout: the release binary, the systemd unit and
# preset, a default /etc/primer/primer.yaml (a conffile), man pages and shell completions
# generated from the clap definitions. Prints the path of the .deb.
# Usage: packaging/build-deb.sh [OUTDIR]   (default: target/debian)
set -eu
cd "$(dirname "$0")/.."
out=${1:-target/debian}
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
arch=$(dpkg --print-architecture)
cargo build --release --quiet
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
cargo run --quiet --example gen-assets -- "$stage/assets" >/dev/null

root="$stage/root"
install -D -m 0755 target/release/primer "$root/usr/bin/primer"
install -D -m 0644 units/primer.service "$root/usr/lib/systemd/system/primer.service"
install -D -m 0644 units/primer-scripts.service "$root/usr/lib/systemd/system/primer-scripts.service"
install -D -m 0644 units/primer-reclaim.service "$root/usr/lib/systemd/system/primer-reclaim.service"
install -D -m 0644 units/90-primer.preset "$root/usr/lib/systemd/system-preset/90-primer.preset"
install -D -m 0644 packaging/primer.yaml "$root/etc/primer/primer.yaml"
mkdir -p "$root/usr/share/man/man1"
for m in "$stage"/assets/man/*.1; do
    gzip -9n <"$m" >"$root/usr/share/man/man1/$(basename "$m").gz"
done
install -D -m 0644 "$stage/assets/completions/primer.bash" "$root/usr/share/bash-completion/completions/primer"
install -D -m 0644 "$stage/assets/completions/_primer" "$root/usr/share/zsh/vendor-completions/_primer"
install -D -m 0644 "$stage/assets/completions/primer.fish" "$root/usr/share/fish/vendor_completions.d/primer.fish"
install -D -m 0644 README.md "$root/usr/share/doc/primer/README.md"

mkdir -p "$root/DEBIAN"
size=$(du -sk "$root" | cut -f1)
cat >"$root/DEBIAN/control" <<CONTROL
Package: primer
Version: $version
Architecture: $arch
Maintainer: primer developers <primer@localhost>
Installed-Size: $size
Section: admin
Priority: optional
Depends: libc6 (>= 2.34)
Description: first-boot agent for cloud config drives
 primer finds the configuration volume a cloud attached (OpenStack config
 drive), reads it without mounting, and applies host name, SSH keys and a
 private copy of the data at early boot. Re-runs change nothing.
CONTROL
echo /etc/primer/primer.yaml >"$root/DEBIAN/conffiles"
# Enable the unit the way debhelper does (works in a chroot, no running systemd needed).
cat >"$root/DEBIAN/postinst" <<'SCRIPT'
#!/bin/sh
set -e
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
if [ "$1" = remove ] && [ -x /usr/bin/deb-systemd-helper ]; then
    deb-systemd-helper mask primer.service primer-scripts.service primer-reclaim.service >/dev/null || true
fi
if [ "$1" = purge ] && [ -x /usr/bin/deb-systemd-helper ]; then
    deb-systemd-helper purge primer.service primer-scripts.service primer-reclaim.service >/dev/null || true
    deb-systemd-helper unmask primer.service primer-scripts.service primer-reclaim.service >/dev/null || true
    rm -rf /var/lib/primer
fi
if [ -d /run/systemd/system ]; then
    systemctl --system daemon-reload >/dev/null || true
fi
SCRIPT
chmod 0755 "$root/DEBIAN/postinst" "$root/DEBIAN/postrm"
mkdir -p "$out"
deb="$out/primer_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
echo "$deb"
