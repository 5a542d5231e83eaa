//! Process start on Linux without the standard library's runtime set-up (`src/main.rs` is
//! `#![no_main]` there): keeps the two parts of it that change behaviour (SIGPIPE ignored, file
//! descriptors 0-2 always open) at one system call each, and (for `primer run`) faults in the
//! heap a run is about to use in one call instead of one page fault per page. It runs before anything else in the
//! process: it must not start threads, log, or read the command line, the environment or the
//! drive, and allocates nothing but the heap pre-fault's two blocks, freed at once.

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
/// the whole heap in one call; an older kernel refuses it (`EINVAL`) and the pages fault as
/// they are used, as before. Setting `M_TOP_PAD` also turns off glibc's sliding mmap threshold
/// (blocks of 128 KiB and more are then always mapped on their own): a 64 MiB `write_files`
/// run kept its CPU time and peak RSS (`benches/memory.sh --only wf64`).
pub fn prefault_heap() {
    // SAFETY: glibc's mallopt, malloc, free, sbrk(0) (which only reads the break) and
    // mallinfo2; both blocks are freed before anything else runs.
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
        let end = (end + PAGE - 1) & !(PAGE - 1);
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
