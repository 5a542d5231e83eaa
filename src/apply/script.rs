//! Runs user-data scripts on the live system (bounded time, output to the log line by line)
//! and feeds the drive's random seed to the kernel. Never runs anything for a target root that
//! is not the running system, and never logs the seed.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::Target;

/// Longest output line logged (the rest is cut).
const MAX_LINE: usize = 4096;
/// Lines logged per stream; further output is counted and dropped.
const MAX_LINES: usize = 10_000;

/// Writes `seed` to `/dev/urandom`: mixed into the pool without being credited, which is the
/// only safe thing to do with bytes whose origin primer cannot vouch for.
pub fn seed_entropy(seed: &[u8]) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/urandom")?;
    f.write_all(seed)
}

/// Runs the script at `path` (relative to the root). Returns whether it was started, and its
/// outcome: exit status 0 within `timeout_secs`, else an error naming the status or the time-out.
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
    let mut cmd = Command::new(&full);
    cmd.current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so a time-out kills whatever it started too.
        .process_group(0);
    if std::env::var_os("PATH").is_none() {
        cmd.env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        );
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return (false, Err(e)),
    };
    tracing::info!(step = %step, "started /{path} (pid {})", child.id());
    let readers: Vec<_> = [
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
    .map(|r| {
        let step = step.to_string();
        std::thread::spawn(move || log_lines(&step, r))
    })
    .collect();
    let deadline = Instant::now() + Duration::from_secs(timeout_secs);
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Ok(s),
            Ok(None) if Instant::now() >= deadline => {
                let pgid = nix::unistd::Pid::from_raw(child.id() as i32);
                let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
                let _ = child.wait();
                break Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("/{path}: killed after {timeout_secs} s"),
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => break Err(e),
        }
    };
    for r in readers {
        let _ = r.join();
    }
    let r = match status {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(std::io::Error::other(format!("/{path}: {s}"))),
        Err(e) => Err(e),
    };
    (true, r)
}

fn log_lines(step: &str, r: Box<dyn Read + Send>) {
    let mut r = BufReader::new(r);
    let mut buf = Vec::new();
    let mut n = 0usize;
    loop {
        buf.clear();
        match r.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                n += 1;
                if n <= MAX_LINES {
                    let line = String::from_utf8_lossy(&buf[..buf.len().min(MAX_LINE)]);
                    tracing::info!(step = %step, "| {}", line.trim_end());
                }
            }
        }
    }
    if n > MAX_LINES {
        tracing::info!(step = %step, "| ({} more lines not logged)", n - MAX_LINES);
    }
}

/// Checks a sudoers drop-in with `visudo -cf` when visudo is installed on this system (a
/// broken drop-in would lock everyone out of sudo). Without visudo the content is written as
/// planned: primer's own rules are one `user rule` line each.
pub fn check_sudoers(content: &[u8]) -> std::io::Result<()> {
    let Some(visudo) = ["/usr/sbin/visudo", "/sbin/visudo", "/usr/bin/visudo"]
        .iter()
        .find(|p| std::path::Path::new(p).exists())
    else {
        tracing::debug!("visudo not installed here: sudoers drop-in not validated");
        return Ok(());
    };
    let mut tmp = tempfile_in_tmp()?;
    tmp.1.write_all(content)?;
    let out = Command::new(visudo)
        .arg("-cf")
        .arg(&tmp.0)
        .stdin(Stdio::null())
        .output();
    let _ = std::fs::remove_file(&tmp.0);
    let out = out?;
    if out.status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "visudo -cf rejected the sudoers drop-in: {}",
            String::from_utf8_lossy(&out.stdout).trim()
        )))
    }
}

/// A private (0600) temporary file: (path, handle).
fn tempfile_in_tmp() -> std::io::Result<(std::path::PathBuf, std::fs::File)> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = std::env::temp_dir();
    for n in 0..100u32 {
        let p = dir.join(format!(".primer-sudoers.{}.{n}", std::process::id()));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&p)
        {
            Ok(f) => return Ok((p, f)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other("cannot create a temporary file"))
}
