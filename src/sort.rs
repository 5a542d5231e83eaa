//! One stable sort for the whole crate: a slice is put in order through the sorted permutation of
//! its indices, and that permutation is sorted by a single, non-generic instance of the standard
//! library's stable sort. Pure: no I/O, no allocation beyond the index list.
//!
//! Why: every `sort`, `sort_by` or `sort_by_key` on a distinct element type or closure compiles a
//! copy of the standard library's sort (~4 KB each in the static binary; 48 copies were 0.19 MB of
//! issue 15's 4 MiB). Here the per-type code is only the comparison closure and the in-place
//! permutation. The order is exactly the standard library's `sort_by`: stable, so equal items keep
//! their relative order and every output stays as deterministic as it was. The extra cost is an
//! indirect call per comparison, nothing next to the system calls around any of these sorts (a
//! directory listing, a device list, a drive's keys).

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

/// The order of `n` items under `cmp` (compared by index), stable: the only instance of the
/// standard library's sort that these helpers use.
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
        // The item that was at `start` travels along the cycle until its place comes up.
        while idx[cur] != start {
            let next = idx[cur];
            v.swap(cur, next);
            idx[cur] = cur;
            cur = next;
        }
        idx[cur] = cur;
    }
}

/// `v.sort_by(cmp)`: the same order (stable), through the shared sort.
pub fn sort_by<T>(v: &mut [T], mut cmp: impl FnMut(&T, &T) -> Ordering) {
    if v.len() < 2 {
        return;
    }
    let idx = {
        let s = &*v;
        order(s.len(), &mut |a, b| cmp(&s[a], &s[b]))
    };
    permute(v, idx);
}

/// `v.sort_by_key(key)`: the same order (stable; the key is computed per comparison, as the
/// standard library's `sort_by_key` does).
pub fn sort_by_key<T, K: Ord>(v: &mut [T], mut key: impl FnMut(&T) -> K) {
    sort_by(v, |a, b| key(a).cmp(&key(b)));
}

/// `v.sort()`: the same order (stable).
pub fn sort<T: Ord>(v: &mut [T]) {
    sort_by(v, T::cmp);
}

/// `items.collect::<BTreeSet<_>>()` built by insertion: `collect` sorts its input first, with its
/// own copy of the stable sort per element type. Same set.
pub fn set<T: Ord>(items: impl IntoIterator<Item = T>) -> BTreeSet<T> {
    let mut s = BTreeSet::new();
    s.extend(items);
    s
}

/// `items.collect::<BTreeMap<_, _>>()` built by insertion (see [`set`]); as with `collect`, the
/// last value of a repeated key wins.
pub fn map<K: Ord, V>(items: impl IntoIterator<Item = (K, V)>) -> BTreeMap<K, V> {
    let mut m = BTreeMap::new();
    m.extend(items);
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator (no randomness in the crate).
    fn numbers(seed: u64, n: usize) -> Vec<u64> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x
            })
            .collect()
    }

    #[test]
    fn same_order_as_the_standard_stable_sort() {
        for n in [0usize, 1, 2, 3, 7, 20, 21, 100, 1000] {
            for seed in 1..20u64 {
                // Few distinct keys, so ties are many: stability shows.
                let v: Vec<(u64, usize)> = numbers(seed, n)
                    .into_iter()
                    .enumerate()
                    .map(|(i, x)| (x % 5, i))
                    .collect();
                let mut want = v.clone();
                want.sort_by_key(|p| p.0);
                let mut got = v.clone();
                sort_by_key(&mut got, |p| p.0);
                assert_eq!(got, want, "n={n} seed={seed}");
                let mut want = v.clone();
                want.sort_by_key(|p| std::cmp::Reverse(p.0));
                let mut got = v.clone();
                sort_by(&mut got, |a, b| b.0.cmp(&a.0));
                assert_eq!(got, want);
            }
        }
        let mut s: Vec<String> = numbers(3, 50)
            .iter()
            .map(|x| (x % 17).to_string())
            .collect();
        let mut want = s.clone();
        want.sort();
        sort(&mut s);
        assert_eq!(s, want);
    }

    #[test]
    fn set_and_map_equal_collect() {
        let v: Vec<(u64, usize)> = numbers(7, 200)
            .into_iter()
            .enumerate()
            .map(|(i, x)| (x % 31, i))
            .collect();
        assert_eq!(set(v.iter().map(|p| p.0)), v.iter().map(|p| p.0).collect());
        // Repeated keys: the last value wins, as with `collect`.
        assert_eq!(map(v.iter().copied()), v.iter().copied().collect());
    }
}
