//! Windows volume extension: grows the partition of a drive letter into the free space that
//! follows it, through the Storage module's `Resize-Partition` (`MSFT_Partition.Resize`, what
//! cloudbase-init uses on Nano Server) run by `powershell.exe` with a time-out. Why not VDS:
//! its COM interfaces (IVdsService, IVdsVolume::Extend) are not in `windows-sys` and would
//! need the `windows` crate; why not `IOCTL_DISK_GROW_PARTITION` + `FSCTL_EXTEND_VOLUME`: primer
//! would compute the free extent from the layout itself, and the Storage module already does.
//! Decides nothing (the planner chose to extend); the script is fixed text plus one letter.

use std::io;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Longest run of the resize (a large NTFS volume grows in seconds).
const TIMEOUT: Duration = Duration::from_secs(300);

/// The PowerShell script that grows `letter`'s partition to its largest supported size, or
/// says it is already there. `letter` must be A–Z.
pub fn resize_script(letter: char) -> Option<String> {
    letter.is_ascii_uppercase().then(|| {
        format!(
            "$ErrorActionPreference = 'Stop'\n\
             $p = Get-Partition -DriveLetter {letter}\n\
             $max = (Get-PartitionSupportedSize -DriveLetter {letter}).SizeMax\n\
             if ($max -gt $p.Size + 1MB) {{\n\
             \x20   Resize-Partition -DriveLetter {letter} -Size $max\n\
             \x20   Write-Output \"grown: $($p.Size) -> $max bytes\"\n\
             }} else {{\n\
             \x20   Write-Output \"unchanged: $($p.Size) bytes, the largest supported size\"\n\
             }}\n"
        )
    })
}

/// Grows the volume of drive `letter`; its outcome line is logged.
pub fn extend(letter: char) -> io::Result<()> {
    let script = resize_script(letter).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("extend volume: {letter:?} is not a drive letter"),
        )
    })?;
    let windir = std::env::var("windir").unwrap_or_else(|_| r"C:\Windows".into());
    let ps = format!(r"{windir}\System32\WindowsPowerShell\v1.0\powershell.exe");
    let mut child = Command::new(&ps)
        .args([
            "-NoProfile",
            "-NonInteractive",
            "-ExecutionPolicy",
            "Bypass",
            "-Command",
            &script,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("{ps}: {e}")))?;
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if child.try_wait()?.is_some() {
            break;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "extend volume {letter}: killed after {} s",
                    TIMEOUT.as_secs()
                ),
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // The output is a line or two (the pipes cannot fill while the process runs).
    let out = child.wait_with_output()?;
    let text = |b: &[u8]| {
        crate::model::grammar::log_safe(String::from_utf8_lossy(b).trim(), 2000).into_owned()
    };
    if out.status.success() {
        tracing::info!("extend volume {letter}: {}", text(&out.stdout));
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "extend volume {letter}: powershell {}: {}",
            out.status,
            text(&out.stderr)
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_drive_letters_make_a_script() {
        let s = resize_script('C').unwrap();
        assert!(s.contains("Resize-Partition -DriveLetter C -Size $max"));
        assert!(resize_script('c').is_none());
        assert!(resize_script(';').is_none());
    }
}
