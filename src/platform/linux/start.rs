//! Process start on Linux without the standard library's runtime set-up (`src/main.rs` is
//! `#![no_main]` there): keeps the two parts of it that change behaviour (SIGPIPE ignored, file
//! descriptors 0-2 always open) at one system call each, and (for a `primer run` that takes the
//! full path) faults in the heap the run is about to use in one call instead of one page fault
//! per page. `init` runs before anything else in the process: it must not start threads, log,
//! or read the command line, the environment or the drive; the heap pre-fault allocates
//! nothing but its two blocks, freed at once.

use nix::libc;

/// What `std`'s runtime start does that primer's behaviour depends on.
///
/// Skipped from `std`: reading `/proc/self/maps` for the main thread's stack guard, the
/// alternate signal stack and SIGSEGV/SIGBUS handlers that turn a stack overflow into the
/// "has overflowed its stack" message (a stack overflow is then a plain SIGSEGV: primer's
/// recursions are bounded by depth limits), and registering the main thread's name (a panic
/// message may name the thread `<unnamed>` instead of `main`).
pub fn init() {
    ignore_sigpipe();
    open_standard_fds();
}

/// SIGPIPE ignored as `std` does: a write to a closed pipe (`primer status | head -1`) then
/// fails with `EPIPE`, which primer reports, instead of killing the process silently. Child
/// processes get SIGPIPE back at its default (`std::process::Command` resets it).
fn ignore_sigpipe() {
    // SAFETY: setting a signal's disposition to SIG_IGN installs no handler code.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
}

/// Descriptors 0-2 made valid when the process was started with one closed (as `std` does):
/// otherwise the first file primer opens would get number 1 or 2 and a report or a log line
/// would be written into it. One `poll` says which are closed.
fn open_standard_fds() {
    let mut fds = [0, 1, 2].map(|fd| libc::pollfd {
        fd,
        events: 0,
        revents: 0,
    });
    loop {
        // SAFETY: `fds` is a valid array of 3 pollfd; a zero timeout never blocks.
        if unsafe { libc::poll(fds.as_mut_ptr(), 3, 0) } != -1 {
            break;
        }
        match std::io::Error::last_os_error().raw_os_error() {
            Some(libc::EINTR) => continue,
            // poll refused (resource limits): ask each descriptor instead, as `std` does.
            _ => {
                for pfd in fds.iter_mut() {
                    // SAFETY: F_GETFD only reads the descriptor's flags.
                    let closed = unsafe { libc::fcntl(pfd.fd, libc::F_GETFD) } == -1
                        && std::io::Error::last_os_error().raw_os_error() == Some(libc::EBADF);
                    pfd.revents = if closed { libc::POLLNVAL } else { 0 };
                }
                break;
            }
        }
    }
    for pfd in fds {
        if pfd.revents & libc::POLLNVAL != 0 {
            // SAFETY: a constant NUL-terminated path; the lowest free number is the closed one.
            let fd = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) };
            if fd == -1 {
                // As `std`: never run with a standard stream that a later open would take.
                std::process::abort();
            }
        }
    }
}

/// Whether this process is one the heap pre-fault is worth for (`primer run`): set by `main`,
/// acted on by the run once it knows it takes the full path ([`prefault_heap_for_full_run`]).
static WANTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Marks this process as a run: the full path pre-faults its heap ([`prefault_heap`]). Only
/// the heap's padding is set now (so glibc's mmap threshold stops sliding from the first
/// allocation on, as before); the pre-fault itself waits: a re-run that takes the fast path
/// (`agent::rerun`) allocates little, and faulting in 520 KiB it never touches cost it ~10 %
/// of its CPU time (issue 15).
pub fn want_heap_prefault() {
    // SAFETY: glibc's mallopt, before anything else allocates.
    unsafe { libc::mallopt(libc::M_TOP_PAD, HEAP_PAD as libc::c_int) };
    WANTED.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// [`prefault_heap`] once, when `main` asked for it ([`want_heap_prefault`]): called before
/// the run when it will take the full path for sure (no re-run cache: `cli`), else by the run
/// when the fast path is not taken. A no-op in the library's own tests (nothing asks).
pub fn prefault_heap_for_full_run() {
    if WANTED.swap(false, std::sync::atomic::Ordering::Relaxed) {
        prefault_heap();
    }
}

/// [`prefault_heap_for_full_run`] unless `cache` (the re-run cache under the root) exists: a
/// run without one takes the full path for sure. Asked with `access(2)`, not `statx`: the
/// standard library answers a process's first failing `statx` with a second one that probes
/// whether the call exists (a first run's cache is missing).
pub fn prefault_heap_unless_cached(cache: &std::path::Path) {
    use std::os::unix::ffi::OsStrExt;
    if !WANTED.load(std::sync::atomic::Ordering::Relaxed) {
        return;
    }
    let Ok(c) = std::ffi::CString::new(cache.as_os_str().as_bytes()) else {
        return prefault_heap_for_full_run();
    };
    // SAFETY: a NUL-terminated path; F_OK only asks whether it exists.
    if unsafe { libc::access(c.as_ptr(), libc::F_OK) } != 0 {
        prefault_heap_for_full_run();
    }
}

/// The heap's top kept this far above what is in use, and faulted in now: what a first run
/// allocates beyond the heap glibc starts with (measured: its heap faults stop between 384 and
/// 512 KiB). One `madvise` instead of ~70 page faults; a run's peak RSS grows by at most this.
const HEAP_PAD: usize = 512 << 10;

const PAGE: usize = 4096;

/// Grows glibc's heap once by [`HEAP_PAD`] and faults it in with one call. Worth it for a run
/// (-0.1 ms), not for a command that allocates little (`primer show`: +0.1 ms): the caller
/// chooses.
///
/// `M_TOP_PAD` makes every growth of the heap (and what a trim keeps) [`HEAP_PAD`] larger; two
/// blocks of 100 KiB (each below the 128 KiB at which glibc maps a block of its own) outgrow
/// the initial heap, so the growth happens here; freed, they return to the top of the heap,
/// which the trim keeps at [`HEAP_PAD`]. Then `MADV_POPULATE_WRITE` (Linux 5.14) faults in
/// the heap's first [`HEAP_PAD`] bytes in one call; an older kernel refuses it (`EINVAL`) and the pages fault as
/// they are used, as before. Setting `M_TOP_PAD` also turns off glibc's sliding mmap threshold
/// (blocks of 128 KiB and more are then always mapped on their own): a 64 MiB `write_files`
/// run kept its CPU time and peak RSS (`benches/memory.sh --only wf64`).
fn prefault_heap() {
    // SAFETY: glibc's mallopt, malloc, free, sbrk(0) (which only reads the break) and
    // mallinfo2; both blocks are freed at once (single-threaded: nothing else allocates).
    unsafe {
        libc::mallopt(libc::M_TOP_PAD, HEAP_PAD as libc::c_int);
        // Through black_box: LLVM removes a malloc whose block is only freed.
        let a = std::hint::black_box(libc::malloc(100 << 10));
        let b = std::hint::black_box(libc::malloc(100 << 10));
        libc::free(b);
        libc::free(a);
        let end = libc::sbrk(0) as usize;
        // The main arena is one contiguous range from the heap's start to the break.
        let arena = libc::mallinfo2().arena;
        let start = end.saturating_sub(arena) & !(PAGE - 1);
        // Only the heap's first HEAP_PAD bytes, however much the run allocated before it
        // asked (a later pre-fault, once the fast path was not taken, finds a heap in use):
        // the pad above what is in use may never be touched (a run reuses what it freed), and
        // faulting it in then only grows the run's peak RSS (+0.3 MiB measured on
        // `benches/memory.sh --only wfmany64`'s re-run, +140 KiB on a first run).
        let end = ((end + PAGE - 1) & !(PAGE - 1)).min(start + HEAP_PAD);
        if end > start && end - start <= 2 * HEAP_PAD {
            // SAFETY: MADV_POPULATE_WRITE only faults the heap's pages in (as a write of
            // their current bytes would); it changes neither their contents nor the mapping.
            libc::madvise(
                start as *mut libc::c_void,
                end - start,
                libc::MADV_POPULATE_WRITE,
            );
        }
    }
}
