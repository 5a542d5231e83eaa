#!/usr/bin/env bash
# Builds primer-<version>-windows-x86_64.zip: primer.exe (release, x86_64-pc-windows-gnu), the
# install and uninstall scripts, the Windows README, the licence and copyright, and the default
# configuration. Output in target/windows/dist/. Needs the rustup target and mingw's linker
# (scripts/test-windows installs both) and `zip` (or python3's zipfile).
set -euo pipefail
cd "$(dirname "$0")/.."
TRIPLE=x86_64-pc-windows-gnu
export CARGO_TARGET_DIR="${PRIMER_WIN_TARGET:-$PWD/target/windows}"
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
cargo build --locked --release --target "$TRIPLE" --bin primer
name="primer-$version-windows-x86_64"
stage="$CARGO_TARGET_DIR/dist/$name"
rm -rf "$stage"
mkdir -p "$stage"
cp "$CARGO_TARGET_DIR/$TRIPLE/release/primer.exe" "$stage/"
cp windows/install.ps1 windows/uninstall.ps1 "$stage/"
cp windows/README.md "$stage/README.md"
cp packaging/copyright "$stage/copyright"
[ -f LICENSE ] && cp LICENSE "$stage/LICENSE"
cp packaging/primer.yaml "$stage/primer.yaml"
# Windows tools read CRLF text best.
for f in "$stage"/*.ps1 "$stage"/README.md "$stage"/copyright "$stage"/primer.yaml; do
    sed -i 's/\r\?$/\r/' "$f"
done
zip="$CARGO_TARGET_DIR/dist/$name.zip"
rm -f "$zip"
if command -v zip >/dev/null; then
    (cd "$CARGO_TARGET_DIR/dist" && zip -qr "$name.zip" "$name")
else
    python3 - "$CARGO_TARGET_DIR/dist" "$name" <<'PY'
import os, sys, zipfile
base, name = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(os.path.join(base, name + ".zip"), "w", zipfile.ZIP_DEFLATED) as z:
    for root, _, files in os.walk(os.path.join(base, name)):
        for f in sorted(files):
            p = os.path.join(root, f)
            z.write(p, os.path.relpath(p, base))
PY
fi
echo "$zip"
