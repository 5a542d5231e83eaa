//! The Windows service: installs and removes primer's service with the Service Control Manager
//! (automatic start, LocalSystem, restart on failure, a description), registers primer as an
//! event log source, and runs as the service (the SCM dispatcher, status reports around one
//! pipeline run handed in by the face). Logging of the service run: a `tracing` layer writing
//! each event to the Windows event log (`ReportEventW`, source `primer`) and a log file under
//! primer's state directory. Decides nothing about the pipeline: what runs is the caller's.

use std::ffi::{OsStr, OsString};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use windows_service::service::{
    ServiceAccess, ServiceAction, ServiceActionType, ServiceControl, ServiceControlAccept,
    ServiceErrorControl, ServiceExitCode, ServiceFailureActions, ServiceFailureResetPeriod,
    ServiceInfo, ServiceStartType, ServiceState, ServiceStatus, ServiceType,
};
use windows_service::service_control_handler::{self, ServiceControlHandlerResult};
use windows_service::service_manager::{ServiceManager, ServiceManagerAccess};
use windows_service::{define_windows_service, service_dispatcher};
use windows_sys::Win32::Foundation::HANDLE;
use windows_sys::Win32::System::EventLog::{
    DeregisterEventSource, RegisterEventSourceW, ReportEventW, EVENTLOG_ERROR_TYPE,
    EVENTLOG_INFORMATION_TYPE, EVENTLOG_WARNING_TYPE, REPORT_EVENT_TYPE,
};
use windows_sys::Win32::System::Registry::{
    RegCloseKey, RegCreateKeyExW, RegDeleteTreeW, RegSetValueExW, HKEY, HKEY_LOCAL_MACHINE,
    KEY_SET_VALUE, REG_DWORD, REG_EXPAND_SZ, REG_OPTION_NON_VOLATILE,
};

use super::wide;

/// The service's (and the event source's) name.
pub const SERVICE_NAME: &str = "primer";
const DISPLAY_NAME: &str = "primer first-boot agent";
const DESCRIPTION: &str = "Reads the cloud's config drive (OpenStack, CloudStack, NoCloud, OVF) \
     at boot and configures this machine from it: computer name, network, keys, user data.";
/// The event log source's registry key (under HKLM).
const EVENT_SOURCE_KEY: &str = r"SYSTEM\CurrentControlSet\Services\EventLog\Application\primer";
/// Messages of event ids 1..=1000 are "%1" in `EventCreate.exe` (what `eventcreate` registers
/// its sources with): primer's text shows as it is, with no message DLL of its own.
const EVENT_MESSAGE_FILE: &str = r"%SystemRoot%\System32\EventCreate.exe";
/// Event ids (all within EventCreate.exe's "%1" range): one per level, for filtering.
const EVENT_ID_ERROR: u32 = 1;
const EVENT_ID_WARNING: u32 = 2;
const EVENT_ID_INFO: u32 = 3;
/// Longest message written to the event log (the limit is 31 839 characters per string).
const MAX_EVENT_CHARS: usize = 8 * 1024;
/// The service log file, under primer's state directory, and the size it never passes: the
/// write that would pass it first moves the file to `.1` (replacing the older one) and starts
/// a new one, so the two files together hold at most twice this.
pub const LOG_FILE: &str = "primer.log";
const MAX_LOG_BYTES: u64 = 4 << 20;

/// A service error naming what failed.
fn err(what: &str, e: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("service {SERVICE_NAME}: {what}: {e}"))
}

/// Installs the service: `exe service run` started automatically at boot as LocalSystem, with
/// its description, restart after a failure (10 s, 60 s, then 5 min; the count resets after a
/// day) also when it exits with an error code, and the event log source.
pub fn install(exe: &Path) -> io::Result<()> {
    let manager = ServiceManager::local_computer(
        None::<&str>,
        ServiceManagerAccess::CONNECT | ServiceManagerAccess::CREATE_SERVICE,
    )
    .map_err(|e| err("connect to the service control manager", e))?;
    let info = ServiceInfo {
        name: OsString::from(SERVICE_NAME),
        display_name: OsString::from(DISPLAY_NAME),
        service_type: ServiceType::OWN_PROCESS,
        start_type: ServiceStartType::AutoStart,
        error_control: ServiceErrorControl::Normal,
        executable_path: exe.to_path_buf(),
        launch_arguments: vec![OsString::from("service"), OsString::from("run")],
        dependencies: vec![],
        // None: LocalSystem.
        account_name: None,
        account_password: None,
    };
    let service = manager
        .create_service(
            &info,
            ServiceAccess::CHANGE_CONFIG | ServiceAccess::QUERY_STATUS,
        )
        .map_err(|e| err("create", e))?;
    service
        .set_description(DESCRIPTION)
        .map_err(|e| err("set the description", e))?;
    let restart = |secs| ServiceAction {
        action_type: ServiceActionType::Restart,
        delay: Duration::from_secs(secs),
    };
    service
        .update_failure_actions(ServiceFailureActions {
            reset_period: ServiceFailureResetPeriod::After(Duration::from_secs(24 * 3600)),
            reboot_msg: None,
            command: None,
            actions: Some(vec![restart(10), restart(60), restart(300)]),
        })
        .map_err(|e| err("set the recovery actions", e))?;
    // Recovery on an error exit (not only a crash) makes the restart cover a failed run; a
    // system without it (wine's SCM lacks this info level) still restarts after a crash:
    // logged, not fatal.
    if let Err(e) = service.set_failure_actions_on_non_crash_failures(true) {
        tracing::warn!("{}", err("set recovery on non-crash failures", e));
    }
    register_event_source(exe)
}

/// Stops the service if it runs, deletes it and the event log source. Not installed: `Ok`
/// (`false`), so uninstalling twice is not an error.
pub fn uninstall() -> io::Result<bool> {
    let manager = ServiceManager::local_computer(None::<&str>, ServiceManagerAccess::CONNECT)
        .map_err(|e| err("connect to the service control manager", e))?;
    let service = match manager.open_service(
        SERVICE_NAME,
        ServiceAccess::QUERY_STATUS | ServiceAccess::STOP | ServiceAccess::DELETE,
    ) {
        Ok(s) => s,
        Err(windows_service::Error::Winapi(e)) if e.raw_os_error() == Some(1060) => {
            // ERROR_SERVICE_DOES_NOT_EXIST
            let _ = unregister_event_source();
            return Ok(false);
        }
        Err(e) => return Err(err("open", e)),
    };
    if let Ok(status) = service.query_status() {
        if status.current_state != ServiceState::Stopped {
            let _ = service.stop();
        }
    }
    service.delete().map_err(|e| err("delete", e))?;
    unregister_event_source()?;
    Ok(true)
}

/// A NUL-terminated UTF-16 registry value as bytes.
fn reg_string(s: &str) -> Vec<u8> {
    wide(OsStr::new(s))
        .into_iter()
        .flat_map(u16::to_le_bytes)
        .collect()
}

/// Registers `primer` as an Application event log source.
fn register_event_source(_exe: &Path) -> io::Result<()> {
    let key = wide(OsStr::new(EVENT_SOURCE_KEY));
    let mut h: HKEY = std::ptr::null_mut();
    // SAFETY: `key` is NUL-terminated; `h` receives an open key, closed below.
    let r = unsafe {
        RegCreateKeyExW(
            HKEY_LOCAL_MACHINE,
            key.as_ptr(),
            0,
            std::ptr::null(),
            REG_OPTION_NON_VOLATILE,
            KEY_SET_VALUE,
            std::ptr::null(),
            &mut h,
            std::ptr::null_mut(),
        )
    };
    if r != 0 {
        return Err(err(
            &format!("register the event source HKLM\\{EVENT_SOURCE_KEY}"),
            io::Error::from_raw_os_error(r as i32),
        ));
    }
    let file = reg_string(EVENT_MESSAGE_FILE);
    let types = (EVENTLOG_ERROR_TYPE | EVENTLOG_WARNING_TYPE | EVENTLOG_INFORMATION_TYPE) as u32;
    let types = types.to_le_bytes();
    let set = |name: &str, kind: u32, data: &[u8]| {
        let n = wide(OsStr::new(name));
        // SAFETY: `h` is open; `n` is NUL-terminated; `data` holds `len` bytes.
        let r = unsafe { RegSetValueExW(h, n.as_ptr(), 0, kind, data.as_ptr(), data.len() as u32) };
        if r != 0 {
            return Err(err(
                &format!("set HKLM\\{EVENT_SOURCE_KEY}\\{name}"),
                io::Error::from_raw_os_error(r as i32),
            ));
        }
        Ok(())
    };
    let r = set("EventMessageFile", REG_EXPAND_SZ, &file)
        .and_then(|()| set("TypesSupported", REG_DWORD, &types));
    // SAFETY: opened above.
    unsafe { RegCloseKey(h) };
    r
}

/// Removes the event log source (a missing key is fine).
fn unregister_event_source() -> io::Result<()> {
    let key = wide(OsStr::new(EVENT_SOURCE_KEY));
    // SAFETY: `key` is NUL-terminated.
    let r = unsafe { RegDeleteTreeW(HKEY_LOCAL_MACHINE, key.as_ptr()) };
    // ERROR_FILE_NOT_FOUND: not registered.
    if r != 0 && r != 2 {
        return Err(err(
            "remove the event source",
            io::Error::from_raw_os_error(r as i32),
        ));
    }
    Ok(())
}

/// The pipeline the service runs: returns primer's exit code.
type Pipeline = fn() -> u8;
static PIPELINE: OnceLock<Pipeline> = OnceLock::new();
static RESULT: Mutex<Option<io::Result<u8>>> = Mutex::new(None);

define_windows_service!(ffi_service_main, service_main);

/// Runs as the service: connects to the SCM dispatcher (which calls back on its own thread),
/// reports "running", runs `pipeline` once, reports "stopped" with its exit code (a
/// service-specific code when it is not 0, "changed", or 10, "unchanged", or 11, "no
/// drive": those are normal ends). Returns the pipeline's exit code. Started outside the
/// SCM, fails with the dispatcher's error (ERROR_FAILED_SERVICE_CONTROLLER_CONNECT).
pub fn run_as_service(pipeline: Pipeline) -> io::Result<u8> {
    let _ = PIPELINE.set(pipeline);
    service_dispatcher::start(SERVICE_NAME, ffi_service_main).map_err(|e| {
        err(
            "connect to the service dispatcher (start it with `sc start primer`, not from a shell)",
            e,
        )
    })?;
    RESULT
        .lock()
        .ok()
        .and_then(|mut r| r.take())
        .unwrap_or_else(|| Err(err("run", "the service main did not run")))
}

fn service_main(_args: Vec<OsString>) {
    let r = serve();
    if let Ok(mut slot) = RESULT.lock() {
        *slot = Some(r);
    }
}

/// Whether an exit code is a normal end (not a failure for the SCM's recovery actions).
pub fn is_success(code: u8) -> bool {
    matches!(code, 0 | 10 | 11)
}

fn serve() -> io::Result<u8> {
    // Stop and shutdown are acknowledged; the run itself is short and not interruptible
    // midway (the writer's steps are atomic), so it finishes and the service then stops.
    let handler = service_control_handler::register(SERVICE_NAME, |c| match c {
        ServiceControl::Interrogate | ServiceControl::Stop | ServiceControl::Shutdown => {
            ServiceControlHandlerResult::NoError
        }
        _ => ServiceControlHandlerResult::NotImplemented,
    })
    .map_err(|e| err("register the control handler", e))?;
    let status = |state, code: u8| ServiceStatus {
        service_type: ServiceType::OWN_PROCESS,
        current_state: state,
        controls_accepted: if state == ServiceState::Running {
            ServiceControlAccept::STOP | ServiceControlAccept::SHUTDOWN
        } else {
            ServiceControlAccept::empty()
        },
        exit_code: if is_success(code) {
            ServiceExitCode::Win32(0)
        } else {
            ServiceExitCode::ServiceSpecific(u32::from(code))
        },
        checkpoint: 0,
        wait_hint: Duration::default(),
        process_id: None,
    };
    handler
        .set_service_status(status(ServiceState::Running, 0))
        .map_err(|e| err("report running", e))?;
    let code = match PIPELINE.get() {
        Some(p) => p(),
        None => 1,
    };
    handler
        .set_service_status(status(ServiceState::Stopped, code))
        .map_err(|e| err("report stopped", e))?;
    Ok(code)
}

/// A `tracing` layer for the service: each event at or above `level` goes to the Windows event
/// log (source `primer`) and as one line to `primer.log` in primer's state directory. Event
/// text is primer's own messages, whose drive strings are already escaped (`grammar::Esc`);
/// control characters are escaped again here so one event is one line in the file.
pub struct ServiceLog {
    source: Option<EventSource>,
    file: Option<Mutex<LogFile>>,
    level: Level,
}

/// The open service log file, its size, and the cap it rotates at.
struct LogFile {
    dir: PathBuf,
    file: Option<File>,
    size: u64,
    cap: u64,
}

/// Whether a line of `next` bytes must go to a new file: it would take the file past `cap`.
/// An empty file takes any line (a line is capped far below the file's cap).
fn needs_rotation(size: u64, next: u64, cap: u64) -> bool {
    size > 0 && size.saturating_add(next) > cap
}

impl LogFile {
    /// Appends one line, first rotating when it would take the file past the cap. A rotation
    /// that fails leaves the line unwritten rather than the cap broken.
    fn write_line(&mut self, line: &str) {
        let n = line.len() as u64;
        if needs_rotation(self.size, n, self.cap) {
            // Closed before it is renamed: no handle to the old file is left open.
            self.file = None;
            let path = self.dir.join(LOG_FILE);
            // A reader holding the file without delete sharing makes the rename fail: then
            // this line is dropped (the file stays closed until a rotation succeeds), rather
            // than the file growing past its cap.
            if fs::rename(&path, self.dir.join(format!("{LOG_FILE}.1"))).is_err() {
                return;
            }
            match open_log_file(&self.dir, self.cap) {
                Ok(f) => *self = f,
                Err(_) => return,
            }
        }
        if let Some(f) = &mut self.file {
            if f.write_all(line.as_bytes()).is_ok() {
                self.size += n;
            }
        }
    }
}

/// An open event log source handle.
struct EventSource(HANDLE);
// SAFETY: an event source handle may be used from any thread (ReportEventW is thread-safe).
unsafe impl Send for EventSource {}
// SAFETY: as above.
unsafe impl Sync for EventSource {}

impl Drop for EventSource {
    fn drop(&mut self) {
        // SAFETY: opened by RegisterEventSourceW.
        unsafe { DeregisterEventSource(self.0) };
    }
}

impl ServiceLog {
    /// Opens the event source and the log file `dir\primer.log` (created private: the state
    /// directory is SYSTEM and Administrators only). Either may be missing (logged to the
    /// other): the service still runs.
    pub fn open(dir: &Path, level: Level) -> ServiceLog {
        let name = wide(OsStr::new(SERVICE_NAME));
        // SAFETY: `name` is NUL-terminated; a null server is the local machine.
        let h = unsafe { RegisterEventSourceW(std::ptr::null(), name.as_ptr()) };
        let source = (!h.is_null()).then_some(EventSource(h));
        let file = open_log_file(dir, MAX_LOG_BYTES).ok().map(Mutex::new);
        ServiceLog {
            source,
            file,
            level,
        }
    }

    fn report(&self, level: Level, text: &str) {
        if let Some(s) = &self.source {
            let (kind, id): (REPORT_EVENT_TYPE, u32) = match level {
                Level::ERROR => (EVENTLOG_ERROR_TYPE, EVENT_ID_ERROR),
                Level::WARN => (EVENTLOG_WARNING_TYPE, EVENT_ID_WARNING),
                _ => (EVENTLOG_INFORMATION_TYPE, EVENT_ID_INFO),
            };
            let short: String = text.chars().take(MAX_EVENT_CHARS).collect();
            let w = wide(OsStr::new(&short));
            let strings = [w.as_ptr()];
            // SAFETY: the handle is open; one NUL-terminated string; no raw data.
            unsafe {
                ReportEventW(
                    s.0,
                    kind,
                    0,
                    id,
                    std::ptr::null_mut(),
                    1,
                    0,
                    strings.as_ptr(),
                    std::ptr::null(),
                )
            };
        }
        if let Some(f) = &self.file {
            if let Ok(mut f) = f.lock() {
                let short: String = text.chars().take(MAX_EVENT_CHARS).collect();
                f.write_line(&format!("{} {level} {short}\n", now_utc()));
            }
        }
    }
}

/// Opens (appending) the service log, starting afresh when it is already at `cap` (a file
/// from an older primer may be larger).
fn open_log_file(dir: &Path, cap: u64) -> io::Result<LogFile> {
    let path = dir.join(LOG_FILE);
    if fs::metadata(&path).is_ok_and(|m| m.len() >= cap) {
        let _ = fs::rename(&path, dir.join(format!("{LOG_FILE}.1")));
    }
    if !dir.exists() {
        // Before the first run made it: private from the start, as the run lock makes it.
        fs::create_dir_all(dir)?;
        super::security::set_private(dir, true)?;
    }
    if !path.exists() {
        drop(super::create_private_file(&path)?);
    }
    let file = OpenOptions::new().append(true).open(&path)?;
    let size = file.metadata()?.len();
    Ok(LogFile {
        dir: dir.to_path_buf(),
        file: Some(file),
        size,
        cap,
    })
}

/// Seconds since the Unix epoch, for the log file's lines (no calendar arithmetic here).
fn now_utc() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!("{}.{:03}", t.as_secs(), t.subsec_millis())
}

/// The text of an event: its message, then its other fields as `name=value`; control
/// characters escaped.
#[derive(Default)]
struct Text(String);

impl Visit for Text {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let v = format!("{value:?}");
        if field.name() == "message" {
            self.0.insert_str(0, &v);
        } else {
            self.0.push_str(&format!(" {}={v}", field.name()));
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0.insert_str(0, value);
        } else {
            self.0.push_str(&format!(" {}={value}", field.name()));
        }
    }
}

/// `s` with every control character escaped (`\n`, `\u{1b}`): one event, one line.
pub fn one_line(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

impl<S: Subscriber> Layer<S> for ServiceLog {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let level = *event.metadata().level();
        if level > self.level {
            return;
        }
        let mut t = Text::default();
        event.record(&mut t);
        self.report(level, &one_line(&t.0));
    }
}

/// Where the service writes its log file: primer's state directory on the system drive.
pub fn log_dir() -> PathBuf {
    super::state_dir()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_that_are_normal_ends() {
        assert!(is_success(0) && is_success(10) && is_success(11));
        assert!(!is_success(1) && !is_success(3) && !is_success(12));
    }

    #[test]
    fn log_lines_carry_no_control_character() {
        let s = one_line("drive said \"a\nb\r\u{1b}[2J\0\"");
        assert!(!s.chars().any(char::is_control), "{s}");
        assert!(s.contains(r"\n") && s.contains(r"\u{1b}"));
    }

    #[test]
    fn the_log_file_is_appended_and_rolled() {
        let t = tempfile::tempdir().unwrap();
        let log = ServiceLog {
            source: None,
            file: open_log_file(t.path(), MAX_LOG_BYTES).ok().map(Mutex::new),
            level: Level::INFO,
        };
        log.report(Level::WARN, "first");
        log.report(Level::INFO, "second");
        drop(log);
        let text = fs::read_to_string(t.path().join(LOG_FILE)).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(lines[0].ends_with(" WARN first") && lines[1].ends_with(" INFO second"));
        // Past the size bound, the next open starts a new file and keeps one old one.
        fs::write(
            t.path().join(LOG_FILE),
            vec![b'x'; MAX_LOG_BYTES as usize + 1],
        )
        .unwrap();
        drop(open_log_file(t.path(), MAX_LOG_BYTES).unwrap());
        assert_eq!(fs::metadata(t.path().join(LOG_FILE)).unwrap().len(), 0);
        assert!(t.path().join(format!("{LOG_FILE}.1")).exists());
    }

    #[test]
    fn the_size_rule_rotates_before_a_write_would_pass_the_cap() {
        assert!(!needs_rotation(0, 10, 100), "an empty file takes any line");
        assert!(
            !needs_rotation(0, 1000, 100),
            "even one longer than the cap"
        );
        assert!(
            !needs_rotation(90, 10, 100),
            "exactly at the cap is allowed"
        );
        assert!(needs_rotation(91, 10, 100));
        assert!(needs_rotation(u64::MAX, 1, 100), "no overflow");
        assert!(!needs_rotation(MAX_LOG_BYTES - 100, 100, MAX_LOG_BYTES));
        assert!(needs_rotation(MAX_LOG_BYTES - 100, 101, MAX_LOG_BYTES));
    }

    #[test]
    fn every_write_keeps_the_log_file_under_its_cap() {
        let t = tempfile::tempdir().unwrap();
        let log = ServiceLog {
            source: None,
            file: open_log_file(t.path(), 200).ok().map(Mutex::new),
            level: Level::INFO,
        };
        let (cur, old) = (
            t.path().join(LOG_FILE),
            t.path().join(format!("{LOG_FILE}.1")),
        );
        for i in 0..40 {
            log.report(Level::INFO, &format!("line {i:02} of the service log"));
            let n = fs::metadata(&cur).unwrap().len();
            assert!(n <= 200, "after line {i}: {n} bytes");
        }
        drop(log);
        // Rotated during the writes, not only at an open: the newest line is in the current
        // file, the one before the last rotation in `.1`, each whole.
        let (c, o) = (
            fs::read_to_string(&cur).unwrap(),
            fs::read_to_string(&old).unwrap(),
        );
        assert!(
            c.lines()
                .last()
                .unwrap()
                .ends_with("line 39 of the service log"),
            "{c}"
        );
        assert!(!o.is_empty() && o.len() <= 200, "{o}");
        let count = c.lines().count() + o.lines().count();
        assert!(
            count < 40,
            "older lines dropped with the older file: {count}"
        );
        for l in c.lines().chain(o.lines()) {
            assert!(
                l.contains(" INFO line ") && l.ends_with(" of the service log"),
                "{l}"
            );
        }
    }

    #[test]
    fn the_event_source_can_be_registered_and_written() {
        // wine implements the registry and a no-op event log: register, write, unregister.
        let exe = std::env::current_exe().unwrap();
        if register_event_source(&exe).is_err() {
            // Not elevated on a real Windows: nothing to check here.
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let log = ServiceLog::open(t.path(), Level::INFO);
        assert!(log.source.is_some(), "RegisterEventSourceW");
        log.report(Level::INFO, "primer unit test event");
        drop(log);
        unregister_event_source().unwrap();
        unregister_event_source().unwrap();
    }
}
