//! Runs user-data scripts on the live system (bounded time, output to the log line by line)
//! and feeds the drive's random seed to the kernel. Never runs anything for a target root that
//! is not the running system, and never logs the seed.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::Target;

/// Longest output line logged in one piece (a longer line goes on in continuation pieces).
const MAX_LINE: usize = 4096;
/// Lines (pieces) logged per stream; further output is counted and dropped.
const MAX_LINES: usize = 10_000;
/// Bytes read from a stream at a time.
const CHUNK: usize = 4096;
/// How long to wait for a script's output to end once the script has ended or been killed.
const OUTPUT_GRACE: Duration = Duration::from_secs(2);

/// Runs the script at `path` (relative to the root). Returns whether it was started, and its
/// outcome: exit status 0 within `timeout_secs`, else an error naming the status or the time-out.
///
/// The whole run is bounded: at most `timeout_secs` for the script, then at most
/// [`OUTPUT_GRACE`] for its output to end. A process the script leaves running in the
/// background (`nohup daemon &`) may hold stdout or stderr open for long after the script
/// exits; primer stops waiting for that output after the grace period and leaves the reader
/// threads behind (they end when the pipe closes, or with primer, which exits soon after).
pub fn run_script(
    target: &Target,
    step: &str,
    path: &str,
    timeout_secs: u64,
) -> (bool, std::io::Result<()>) {
    if !target.live {
        return (false, Err(std::io::Error::other("not a live system")));
    }
    let full = target.root.join(path);
    let mut cmd = match command_for(&full) {
        Ok(c) => c,
        Err(e) => return (false, Err(e)),
    };
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return (false, Err(super::fs::at(&full, e))),
    };
    crate::platform::track(&child);
    tracing::info!(step = %step, "started /{path} (pid {})", child.id());
    // Each reader reports on `done` when its stream ends.
    let (done_tx, done) = std::sync::mpsc::channel::<()>();
    let streams = take_streams(&mut child);
    let readers = streams.len();
    for r in streams {
        let step = step.to_string();
        let done_tx = done_tx.clone();
        std::thread::spawn(move || {
            log_lines(&step, r);
            let _ = done_tx.send(());
        });
    }
    drop(done_tx);
    let deadline = Instant::now() + Duration::from_secs(timeout_secs);
    // A script that prints nothing for minutes still shows in the journal that it runs.
    let progress = crate::progress::Progress::start(format!(
        "{}: running (time-out {timeout_secs} s)",
        crate::model::grammar::Esc(step)
    ));
    let status = match wait_until(&mut child, deadline, crate::platform::kill_tree) {
        Ok(Some(s)) => Ok(s),
        Ok(None) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("/{path}: killed after {timeout_secs} s"),
        )),
        Err(e) => Err(e),
    };
    drop(progress);
    crate::platform::untrack(&child);
    // The script is gone: its output ends now unless something else still holds the pipes.
    let grace_end = Instant::now() + OUTPUT_GRACE;
    let mut ended = 0;
    while ended < readers {
        let left = grace_end.saturating_duration_since(Instant::now());
        match done.recv_timeout(left) {
            Ok(()) => ended += 1,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                tracing::warn!(
                    step = %step,
                    "/{path}: output still open {} s after the script ended (a background \
                     process holds it): no longer waiting for it",
                    OUTPUT_GRACE.as_secs()
                );
                break;
            }
            // A reader thread panicked: nothing left to wait for from it.
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let r = match status {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(std::io::Error::other(format!("/{path}: {s}"))),
        Err(e) => Err(e),
    };
    (true, r)
}

/// The child's stdout and stderr (whichever are piped), taken from it as readers to drain on
/// threads: a full pipe must never stall the child while primer waits for it.
pub(crate) fn take_streams(child: &mut std::process::Child) -> Vec<Box<dyn Read + Send>> {
    [
        child
            .stdout
            .take()
            .map(|r| Box::new(r) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|r| Box::new(r) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// Polls `child` until it exits or `deadline` passes; past it, `kill` ends it (and reaps it)
/// and the result is `Ok(None)`. The caller chooses how far the kill reaches (a script's whole
/// process group, or one tool).
pub(crate) fn wait_until(
    child: &mut std::process::Child,
    deadline: Instant,
    kill: impl FnOnce(&mut std::process::Child),
) -> std::io::Result<Option<std::process::ExitStatus>> {
    loop {
        match child.try_wait()? {
            Some(s) => return Ok(Some(s)),
            None if Instant::now() >= deadline => {
                kill(child);
                return Ok(None);
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Logs what `r` yields, line by line, reading fixed-size chunks: memory stays bounded by
/// [`MAX_LINE`] however long a line is. A longer line is logged in pieces of `MAX_LINE` bytes,
/// the pieces after the first marked `|+`. At most [`MAX_LINES`] pieces are logged; the rest
/// are counted.
fn log_lines(step: &str, mut r: impl Read) {
    let mut chunk = [0u8; CHUNK];
    let mut log = LineLog::new(|line: &str| tracing::info!(step = %step, "{line}"));
    loop {
        let got = match r.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        log.feed(&chunk[..got]);
    }
    log.finish();
}

/// Cuts a byte stream into log lines for [`log_lines`]; `out` receives each line to log.
struct LineLog<F: FnMut(&str)> {
    out: F,
    /// Bytes of the current line not yet logged (never more than `MAX_LINE`).
    pending: Vec<u8>,
    /// `pending` continues a line whose beginning was logged already.
    continued: bool,
    /// Pieces seen (logged or not).
    lines: usize,
}

impl<F: FnMut(&str)> LineLog<F> {
    fn new(out: F) -> Self {
        LineLog {
            out,
            pending: Vec::with_capacity(MAX_LINE),
            continued: false,
            lines: 0,
        }
    }

    fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let room = MAX_LINE - self.pending.len();
            let window = &bytes[..bytes.len().min(room)];
            if let Some(i) = window.iter().position(|&b| b == b'\n') {
                self.pending.extend_from_slice(&window[..i]);
                // A line of exactly MAX_LINE bytes was logged whole: no empty piece for its end.
                if !(self.continued && self.pending.is_empty()) {
                    self.emit(self.pending.len());
                }
                self.pending.clear();
                self.continued = false;
                bytes = &bytes[i + 1..];
            } else {
                self.pending.extend_from_slice(window);
                bytes = &bytes[window.len()..];
                if self.pending.len() == MAX_LINE {
                    // Cut before a character split at the end (kept for the next piece).
                    let cut = MAX_LINE - incomplete_utf8_tail(&self.pending);
                    self.emit(cut);
                    self.pending.drain(..cut);
                    self.continued = true;
                }
            }
        }
    }

    /// Logs `pending[..len]` as one piece.
    fn emit(&mut self, len: usize) {
        self.lines += 1;
        if self.lines <= MAX_LINES {
            let text = String::from_utf8_lossy(&self.pending[..len]);
            let mark = if self.continued { "|+" } else { "|" };
            (self.out)(&format!("{mark} {}", text.trim_end()));
        }
    }

    fn finish(mut self) {
        if !self.pending.is_empty() {
            self.emit(self.pending.len());
        }
        if self.lines > MAX_LINES {
            let more = self.lines - MAX_LINES;
            (self.out)(&format!("| ({more} more lines not logged)"));
        }
    }
}

/// How many bytes at the end of `b` are the start of a UTF-8 character that is not complete
/// (0 when `b` ends on a character boundary or is not UTF-8 there).
fn incomplete_utf8_tail(b: &[u8]) -> usize {
    for back in 1..=3.min(b.len()) {
        let c = b[b.len() - back];
        if c & 0xc0 == 0x80 {
            continue; // a continuation byte: look further back for the lead byte
        }
        let want = match c {
            0xc0..=0xdf => 2,
            0xe0..=0xef => 3,
            0xf0..=0xf7 => 4,
            _ => return 0,
        };
        return if want > back { back } else { 0 };
    }
    0
}

/// Checks a sudoers drop-in with `visudo -cf` when visudo is installed on this system (a
/// broken drop-in would lock everyone out of sudo). `staged` is the drop-in itself, staged
/// beside its target inside the root (no copy anywhere else); `content` its bytes, kept out of
/// the diagnostics. Without visudo the content is written as planned: primer's own rules are
/// one `user rule` line each.
pub fn check_sudoers(staged: &std::path::Path, content: &[u8]) -> std::io::Result<()> {
    let Some(visudo) = ["/usr/sbin/visudo", "/sbin/visudo", "/usr/bin/visudo"]
        .iter()
        .find(|p| std::path::Path::new(p).exists())
    else {
        tracing::debug!("visudo not installed here: sudoers drop-in not validated");
        return Ok(());
    };
    let out = Command::new(visudo)
        .arg("-cf")
        .arg(staged)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| std::io::Error::new(e.kind(), format!("{visudo}: {e}")))?;
    if out.status.success() {
        return Ok(());
    }
    let tmp_name = staged.display().to_string();
    let said =
        visudo_diagnostics(&[&out.stderr, &out.stdout], content).replace(&tmp_name, "drop-in");
    Err(std::io::Error::other(if said.is_empty() {
        format!("visudo -cf rejected the sudoers drop-in ({})", out.status)
    } else {
        format!("visudo -cf rejected the sudoers drop-in: {said}")
    }))
}

/// visudo's messages (`streams` in order, trimmed, on one line), without the lines that
/// quote the checked file: visudo echoes the offending line and marks it with `^~~~`, and
/// the drop-in's content is not for the log.
fn visudo_diagnostics(streams: &[&[u8]], content: &[u8]) -> String {
    let content = String::from_utf8_lossy(content);
    let content_lines: Vec<&str> = content
        .lines()
        .map(str::trim)
        .filter(|l| l.len() >= 3)
        .collect();
    let quotes_content =
        |line: &str| content.contains(line) || content_lines.iter().any(|c| line.contains(c));
    let mut said = Vec::new();
    for s in streams {
        for line in String::from_utf8_lossy(s).lines() {
            let line = line.trim();
            let marker = line.chars().all(|c| matches!(c, '^' | '~' | ' '));
            if !line.is_empty() && !marker && !quotes_content(line) {
                said.push(line.to_string());
            }
        }
    }
    said.join("; ")
}

// Shell scripts and process groups: these tests run where they exist.
#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// Writes an executable `/bin/sh` script under a fresh root and runs it with `run_script`.
    fn run(body: &str, timeout_secs: u64) -> (tempfile::TempDir, (bool, std::io::Result<()>)) {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("script");
        std::fs::write(&p, format!("#!/bin/sh\n{body}")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        let target = Target {
            root: t.path().to_path_buf(),
            live: true,
        };
        // Another test thread forking while the script's write handle was open makes exec
        // fail with ETXTBSY for a moment.
        for _ in 0..50 {
            let r = run_script(&target, "test", "script", timeout_secs);
            match &r.1 {
                // `run_script` names the path, which keeps the kind but not the errno.
                Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => return (t, r),
            }
        }
        panic!("script stayed busy");
    }

    #[test]
    fn exit_zero_is_ok() {
        let (_t, (ran, r)) = run("echo hello\necho oops >&2\nexit 0\n", 10);
        assert!(ran);
        r.unwrap();
    }

    #[test]
    fn nonzero_exit_is_an_error_naming_the_status() {
        let (_t, (ran, r)) = run("exit 3\n", 10);
        assert!(ran);
        let e = r.unwrap_err().to_string();
        assert!(e.contains("/script") && e.contains('3'), "{e}");
    }

    #[test]
    fn not_live_does_not_run() {
        let t = tempfile::tempdir().unwrap();
        let target = Target {
            root: t.path().to_path_buf(),
            live: false,
        };
        let (ran, r) = run_script(&target, "test", "script", 1);
        assert!(!ran && r.is_err());
    }

    #[test]
    fn timeout_kills_the_script() {
        let start = Instant::now();
        let (_t, (ran, r)) = run("echo started\nsleep 30\n", 1);
        assert!(ran);
        let e = r.unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut, "{e}");
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{:?}",
            start.elapsed()
        );
    }

    #[test]
    fn background_process_holding_output_does_not_stall() {
        let start = Instant::now();
        // The subshell's sleep keeps stdout and stderr open after the script exits.
        let (t, (ran, r)) = run("(sleep 20 & echo $! > \"$0.pid\")\necho hi\n", 2);
        let took = start.elapsed();
        // End the sleep this test started.
        if let Ok(pid) = std::fs::read_to_string(t.path().join("script.pid")) {
            if let Ok(pid) = pid.trim().parse::<i32>() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        assert!(ran);
        r.unwrap();
        assert!(took < Duration::from_secs(6), "{took:?}");
    }

    /// The peak resident memory of this process, in KiB.
    fn vm_hwm_kib() -> Option<u64> {
        let s = std::fs::read_to_string("/proc/self/status").ok()?;
        let l = s.lines().find(|l| l.starts_with("VmHWM:"))?;
        l.split_whitespace().nth(1)?.parse().ok()
    }

    #[test]
    fn long_line_without_newline_is_logged_in_bounded_memory() {
        const CHILD: &str = "PRIMER_TEST_LONG_LINE_CHILD";
        let body = "head -c 50000000 /dev/zero | tr '\\0' a\n";
        if std::env::var_os(CHILD).is_some() {
            let before = vm_hwm_kib().unwrap();
            let (_t, (ran, r)) = run(body, 120);
            assert!(ran);
            r.unwrap();
            let after = vm_hwm_kib().unwrap();
            println!("hwm-growth-kib {}", after.saturating_sub(before));
            return;
        }
        // The high-water mark is per process and other tests run alongside in this one:
        // measure in a copy of the test binary that runs this test alone.
        let name = format!(
            "{}::long_line_without_newline_is_logged_in_bounded_memory",
            module_path!().split_once("::").unwrap().1
        );
        let out = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", &name, "--nocapture", "--test-threads=1"])
            .env(CHILD, "1")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{stdout}");
        let growth: u64 = stdout
            .lines()
            .find_map(|l| Some(l.split_once("hwm-growth-kib ")?.1))
            .unwrap_or_else(|| panic!("no measurement in: {stdout}"))
            .trim()
            .parse()
            .unwrap();
        // Buffering the line would take 50 MB or more.
        assert!(growth < 16 * 1024, "peak memory grew by {growth} KiB");
    }

    fn pieces(input: &[&[u8]]) -> Vec<String> {
        let mut got = Vec::new();
        let mut log = LineLog::new(|l: &str| got.push(l.to_string()));
        for b in input {
            log.feed(b);
        }
        log.finish();
        got
    }

    #[test]
    fn lines_are_cut_at_newlines_and_max_line() {
        assert_eq!(
            pieces(&[b"a\nb", b"c\n\nlast"]),
            ["| a", "| bc", "| ", "| last"]
        );
        let long = vec![b'x'; MAX_LINE * 2 + 10];
        let got = pieces(&[&long, b"\nnext\n"]);
        assert_eq!(got.len(), 4, "{got:?}");
        assert_eq!(got[0], format!("| {}", "x".repeat(MAX_LINE)));
        assert_eq!(got[1], format!("|+ {}", "x".repeat(MAX_LINE)));
        assert_eq!(got[2], format!("|+ {}", "x".repeat(10)));
        assert_eq!(got[3], "| next");
        // A line of exactly MAX_LINE bytes is one piece, with no empty continuation.
        let exact = vec![b'y'; MAX_LINE];
        let got = pieces(&[&exact[..100], &exact[100..], b"\nz\n"]);
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[1], "| z");
    }

    #[test]
    fn a_character_is_not_split_between_pieces() {
        let mut line = vec![b'a'; MAX_LINE - 1];
        line.extend_from_slice("é".as_bytes());
        line.push(b'\n');
        let got = pieces(&[&line]);
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[1], "|+ é");
        assert!(!got[0].contains('\u{fffd}'));
    }

    #[test]
    fn lines_beyond_the_cap_are_counted() {
        let many = "l\n".repeat(MAX_LINES + 5);
        let got = pieces(&[many.as_bytes()]);
        assert_eq!(got.len(), MAX_LINES + 1);
        assert_eq!(got[MAX_LINES], "| (5 more lines not logged)");
    }

    #[test]
    fn sudoers_check_reports_visudo_diagnostics_without_the_content() {
        if !std::path::Path::new("/usr/sbin/visudo").exists() {
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let check = |content: &[u8]| {
            let p = t.path().join(".90-primer.primer-tmp.1.1");
            std::fs::write(&p, content).unwrap();
            check_sudoers(&p, content)
        };
        check(b"debian ALL=(ALL) NOPASSWD:ALL\n").unwrap();
        let e = check(b"debian ALL=(ALL NOPASSWD ALL\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("syntax error") || e.contains("parse error"),
            "{e}"
        );
        assert!(!e.contains("NOPASSWD") && !e.contains("debian"), "{e}");
        assert!(!e.contains(".primer-tmp"), "{e}");
    }

    #[test]
    fn visudo_diagnostics_drop_quoted_content() {
        let content = b"debian ALL=(ALL NOPASSWD ALL\n";
        let stderr =
            b"/tmp/x:1:17: syntax error\ndebian ALL=(ALL NOPASSWD ALL\n                ^~~~~~~~\n";
        assert_eq!(
            visudo_diagnostics(&[stderr, b"\n"], content),
            "/tmp/x:1:17: syntax error"
        );
        assert_eq!(visudo_diagnostics(&[b"a", b"b"], b""), "a; b");
    }
}

/// The command that runs the script `full`. Linux: the file itself (its `#!` line). Windows:
/// the interpreter its header or extension names (`plan::windows::script_argv`: PowerShell for
/// `#ps1*` and `.ps1`, `cmd.exe /c` for `rem cmd` and `.cmd`, the named program for `#!`).
#[cfg(not(windows))]
fn command_for(full: &std::path::Path) -> std::io::Result<Command> {
    Ok(crate::platform::script_command(full))
}

#[cfg(windows)]
fn command_for(full: &std::path::Path) -> std::io::Result<Command> {
    use crate::plan::windows::{script_argv, script_kind};
    let mut head = Vec::with_capacity(256);
    std::fs::File::open(full)
        .and_then(|f| f.take(256).read_to_end(&mut head))
        .map_err(|e| super::fs::at(full, e))?;
    let windir = std::env::var("windir")
        .or_else(|_| std::env::var("SystemRoot"))
        .unwrap_or_else(|_| r"C:\Windows".into());
    let name = full
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let argv = script_argv(
        script_kind(&head).as_ref(),
        &name,
        &windir,
        &full.to_string_lossy(),
    )
    .ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(
                "{}: no Windows script header (#ps1, #ps1_sysnative, #ps1_x86, rem cmd, #!) and no .ps1/.cmd extension: not run",
                full.display()
            ),
        )
    })?;
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..]);
    cmd.current_dir(crate::platform::system_root());
    Ok(cmd)
}
