//! primer's change to gptman: one stable sort for the crate, the same code as primer's
//! `src/sort.rs` (so the linker's `--icf=all` folds the two into one instance). Pure.
//!
//! Why: each `sort_unstable` on a distinct type or closure compiled its own copy of the standard
//! library's unstable sort (~4 KB each in primer's static binary). Here the slice is put in order
//! through the sorted permutation of its indices, sorted by one non-generic instance. A valid
//! order for `sort_unstable_by_key` (it is stable, which `sort_unstable` allows).

use std::cmp::Ordering;

/// The order of `n` items under `cmp` (compared by index), stable.
fn order(n: usize, cmp: &mut dyn FnMut(usize, usize) -> Ordering) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..n).collect();
    idx.sort_by(|&a, &b| cmp(a, b));
    idx
}

/// Rearranges `v` so that position `k` holds the item that was at `idx[k]`, by swaps along each
/// cycle of the permutation (`idx` is consumed as the visited marks).
fn permute<T>(v: &mut [T], mut idx: Vec<usize>) {
    for start in 0..idx.len() {
        let mut cur = start;
        while idx[cur] != start {
            let next = idx[cur];
            v.swap(cur, next);
            idx[cur] = cur;
            cur = next;
        }
        idx[cur] = cur;
    }
}

/// `v.sort_by_key(key)`: the same order (stable; the key is computed per comparison, as the
/// standard library's `sort_by_key` does).
pub(crate) fn sort_by_key<T, K: Ord>(v: &mut [T], mut key: impl FnMut(&T) -> K) {
    if v.len() < 2 {
        return;
    }
    let idx = {
        let s = &*v;
        order(s.len(), &mut |a, b| key(&s[a]).cmp(&key(&s[b])))
    };
    permute(v, idx);
}
