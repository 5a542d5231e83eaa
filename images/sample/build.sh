#!/bin/sh
# Builds images/sample/config-2.iso from images/sample/tree with nova's genisoimage flags
# (nova/virt/configdrive.py): Joliet + Rock Ridge, volume id config-2. Needs genisoimage
# (Debian: apt-get install genisoimage). The ISO is committed so the README demo needs nothing.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
genisoimage -quiet -o "$here/config-2.iso" -J -r -l -ldots -allow-lowercase -allow-multidot \
    -V config-2 -publisher "primer sample" "$here/tree"
ls -l "$here/config-2.iso"
