//! Fault injection for crash-safety tests: `PRIMER_FAULT_AFTER=N` aborts the process at the
//! N-th fault point of a run (after each applied step, each rename of the commit, each script).
//! Compiled only into debug and test builds (`debug_assertions`); the release binary ignores the
//! variable entirely. Never used for anything but aborting.

#[cfg(debug_assertions)]
mod imp {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;

    static COUNT: AtomicU64 = AtomicU64::new(0);
    static LIMIT: OnceLock<Option<u64>> = OnceLock::new();

    pub fn point(what: &str) {
        let limit = LIMIT.get_or_init(|| {
            std::env::var("PRIMER_FAULT_AFTER")
                .ok()
                .and_then(|v| v.parse().ok())
        });
        if let Some(limit) = *limit {
            let n = COUNT.fetch_add(1, Ordering::SeqCst) + 1;
            if n == limit {
                eprintln!("primer: PRIMER_FAULT_AFTER={limit}: aborting after {what}");
                std::process::abort();
            }
        }
    }
}

/// A place where a crash may happen; aborts here when the test switch says so.
#[inline]
pub fn point(_what: &str) {
    #[cfg(debug_assertions)]
    imp::point(_what);
}
