//! Progress lines during a wait or a long step: a guard whose background thread logs "still
//! waiting" at a fixed interval until the guard is dropped, so the journal never goes silent
//! for more than [`EVERY`] whatever the step blocks on (a poll loop, a child process, an ioctl).
//! One mechanism for every wait (devices, NICs, scripts, reclaim); it decides nothing and never
//! touches what it reports on.

use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Interval between two progress lines: under the 2 s an operator watching the journal may
/// wait without news, with room for a busy machine to run the thread late.
pub const EVERY: Duration = Duration::from_millis(1500);

/// Logs progress until dropped. Created when a wait starts; its lines name `what` and the
/// time elapsed since.
pub struct Progress {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Progress {
    /// Logs `what` (an info line, `what: still waiting (N.N s)`) every [`EVERY`] until dropped.
    pub fn start(what: impl Into<String>) -> Progress {
        Progress::with(what.into(), EVERY, |line| tracing::info!("{line}"))
    }

    /// [`Progress::start`] with its interval and where the lines go (tests count them).
    pub fn with(what: String, every: Duration, sink: impl Fn(&str) + Send + 'static) -> Progress {
        let (tx, rx) = mpsc::channel::<()>();
        let start = Instant::now();
        let thread = std::thread::Builder::new()
            .name("primer-progress".into())
            .spawn(move || loop {
                match rx.recv_timeout(every) {
                    Err(RecvTimeoutError::Timeout) => sink(&format!(
                        "{what}: still waiting ({:.1} s)",
                        start.elapsed().as_secs_f64()
                    )),
                    // Dropped (or told to stop): the wait is over.
                    _ => return,
                }
            })
            // No thread (resource limits): the wait goes on without progress lines, as before.
            .map_err(|e| tracing::debug!("progress lines off: {e}"))
            .ok();
        Progress {
            stop: Some(tx),
            thread,
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        // Closing the channel wakes the thread at once; joining it means no line is logged
        // after the wait has ended.
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    fn collect(every_ms: u64, wait_ms: u64) -> Vec<String> {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let l = lines.clone();
        let p = Progress::with(
            "waiting for x".into(),
            Duration::from_millis(every_ms),
            move |s| l.lock().unwrap().push(s.to_string()),
        );
        std::thread::sleep(Duration::from_millis(wait_ms));
        drop(p);
        lines.lock().map(|g| g.clone()).unwrap_or_default()
    }

    #[test]
    fn a_line_per_interval_until_dropped() {
        let v = collect(100, 550);
        assert!((4..=6).contains(&v.len()), "{v:?}");
        assert!(v[0].starts_with("waiting for x: still waiting ("), "{v:?}");
    }

    #[test]
    fn a_short_wait_logs_nothing_and_drop_is_prompt() {
        let t = Instant::now();
        assert!(collect(10_000, 50).is_empty());
        assert!(t.elapsed() < Duration::from_secs(2));
    }
}
