#!/bin/bash
# Compares two primer binaries on every drive of ../shared/fixtures (or DIR...): for each drive
# and each command (show, show --json, plan, plan --json, run, run --json, run again, net render
# for each backend), the stdout, the exit code and the tree written under a scratch root must be
# byte-identical. Two things differ by design and are compared by shape only: the run status
# (status.json: times and durations blanked) and primer's random digest key (var/lib/primer/secret:
# its size, and the digest a plan shows of it).
#
#   scripts/compare-binaries.sh OLD_BINARY NEW_BINARY [DRIVE_DIR...]
#
# Prints one line per difference and a summary; exits 1 when anything differs.
set -u
old=$1 new=$2
shift 2
here=$(cd "$(dirname "$0")/.." && pwd)
drives=("$@")
if [ ${#drives[@]} -eq 0 ]; then
    for d in "$here"/../shared/fixtures/*/; do drives+=("${d%/}"); done
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

scratch() {
    mkdir -p "$1/etc"
    printf 'root:x:0:0:root:/root:/bin/bash\ndebian:x:1000:1000:Debian:/home/debian:/bin/bash\n' >"$1/etc/passwd"
    printf '127.0.0.1\tlocalhost\n::1\tlocalhost\n' >"$1/etc/hosts"
}

# Every entry under a root: type, mode, owner, size and content hash (status.json blanked).
tree() {
    (cd "$1" && find . -mindepth 1 -printf '%y %m %U:%G %p\n' | sort | while read -r t m o p; do
        if [ "$t" = f ]; then
            if [ "$p" = ./var/lib/primer/secret ]; then
                h="random, $(stat -c %s "$p") bytes"
            elif [ "$p" = ./var/lib/primer/status.json ]; then
                h=$(sed -E 's/"(started|applied|finished|at|time)": "[^"]*"/"\1": "T"/; s/"duration_ms": [0-9]+/"duration_ms": 0/' "$p" | sha256sum | cut -c1-16)
            else
                h=$(sha256sum <"$p" | cut -c1-16)
            fi
            echo "$t $m $o $p $h"
        else
            echo "$t $m $o $p"
        fi
    done)
}

cases=0 diffs=0
check() { # name, then the command's arguments (ROOT stands for the scratch root)
    local name=$1
    shift
    cases=$((cases + 1))
    for side in old new; do
        local bin=$old
        [ $side = new ] && bin=$new
        local root=$work/$side-root
        local args=("${@//ROOT/$root}")
        "$bin" --log-level error "${args[@]}" >"$work/$side.out" 2>/dev/null
        echo "exit $?" >>"$work/$side.out"
        # Times in printed status and durations are the only expected differences.
        sed -i -E 's/[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+Z/T/g; s/"duration_ms": [0-9]+/"duration_ms": 0/' "$work/$side.out"
        sed -i -E '/"path": "var\/lib\/primer\/secret"/,/"sha256"/ s/"sha256": "[0-9a-f]+"/"sha256": "random"/' "$work/$side.out"
        tree "$root" >"$work/$side.tree"
    done
    if ! cmp -s "$work/old.out" "$work/new.out"; then
        diffs=$((diffs + 1))
        echo "DIFF stdout: $name"
        diff "$work/old.out" "$work/new.out" | head -10
    fi
    if ! cmp -s "$work/old.tree" "$work/new.tree"; then
        diffs=$((diffs + 1))
        echo "DIFF tree: $name"
        diff "$work/old.tree" "$work/new.tree" | head -10
    fi
}

for d in "${drives[@]}"; do
    n=$(basename "$d")
    for side in old new; do
        rm -rf "$work/$side-root"
        scratch "$work/$side-root"
    done
    check "$n show" show --source "$d"
    check "$n show --json" show --json --source "$d"
    check "$n plan" plan --source "$d" --root ROOT
    check "$n plan --json" plan --json --source "$d" --root ROOT
    for b in networkd network-manager eni netplan; do
        check "$n net render $b" net render --backend "$b" --source "$d" --root ROOT
    done
    check "$n run" run --source "$d" --root ROOT
    check "$n run again --json" run --json --source "$d" --root ROOT
    check "$n run --dry-run" run --dry-run --source "$d" --root ROOT
done
echo "compared $cases command(s) on ${#drives[@]} drive(s): $diffs difference(s)"
[ $diffs -eq 0 ]
