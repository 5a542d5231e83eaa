//! `write_files` `append` with bounded memory (issue 15): a 32 MiB appended text (a literal
//! block the carve leaves on the device) onto a 32 MiB file is written by streaming the file
//! then the text into the staged file, neither held, with a peak RSS within a few MiB of a
//! small drive's; a re-run appends nothing, an updated drive appends its new text, and a file
//! changed after the first run is left as it is (applied before for this instance).

mod common;

use std::fs;
use std::path::Path;

use common::*;

/// A target root with the account files `write_files` owners are looked up in.
fn target_root() -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    fs::create_dir_all(root.path().join("etc")).unwrap();
    fs::create_dir_all(root.path().join("srv")).unwrap();
    fs::write(
        root.path().join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\n",
    )
    .unwrap();
    fs::write(root.path().join("etc/group"), "root:x:0:\n").unwrap();
    root
}

/// About `size` bytes of varied lines starting with `tag`.
fn lines(tag: &str, size: usize) -> String {
    let mut s = String::with_capacity(size + 100);
    let mut i = 0u32;
    while s.len() < size {
        s.push_str(&format!("{tag} {i}: {}\n", "z".repeat((i % 61) as usize)));
        i += 1;
    }
    s
}

/// A cloud-config appending `text` to /srv/log as a `|` literal block.
fn append_doc(text: &str) -> Vec<u8> {
    let mut doc = String::with_capacity(text.len() * 2);
    doc.push_str(
        "#cloud-config\nwrite_files:\n  - path: /srv/log\n    append: true\n    content: |\n",
    );
    for l in text.lines() {
        doc.push_str("      ");
        doc.push_str(l);
        doc.push('\n');
    }
    doc.into_bytes()
}

/// The drive `ud` as an ISO in a fresh directory below `dir` (named `name`).
fn iso(dir: &Path, name: &str, ud: &[u8]) -> std::path::PathBuf {
    let d = dir.join(name);
    fs::create_dir(&d).unwrap();
    config2_iso(&d, ud)
}

#[test]
fn a_32_mib_append_onto_a_32_mib_file_streams_both_and_appends_once() {
    let dir = tempfile::tempdir().unwrap();
    // Together within the facts' 64 MiB cap (a file past it is not appended to).
    let existing = lines("existing", (32 << 20) - 4096);
    let text = lines("appended", (32 << 20) - 4096);

    // The baseline: a small append onto a small file.
    let small = iso(dir.path(), "small", &append_doc("x"));
    let root = target_root();
    fs::write(root.path().join("srv/log"), "a\n").unwrap();
    let (o, base) = run_measured(&small, root.path(), dir.path());
    assert!(o.status.success(), "{}", text_of(&o));
    assert_eq!(fs::read(root.path().join("srv/log")).unwrap(), b"a\nx\n");

    let big = iso(dir.path(), "big", &append_doc(&text));
    let root = target_root();
    let log = root.path().join("srv/log");
    fs::write(&log, &existing).unwrap();
    let (o, rss) = run_measured(&big, root.path(), dir.path());
    assert!(o.status.success(), "{}", text_of(&o));
    let want = [existing.as_bytes(), text.as_bytes()].concat();
    assert!(
        fs::read(&log).unwrap() == want,
        "the file is not the two joined"
    );
    // Held, the file and the text joined were over 100 MiB (a 64 MiB buffer, the file read
    // whole, the text loaded); streamed, a chunk of each.
    assert!(
        rss < base + 4 * 1024,
        "peak RSS {rss} KiB appending 32 MiB to 32 MiB, {base} KiB for a small append"
    );

    // The same drive again: nothing appended (the record), memory still bounded.
    let (o, rss) = run_measured(&big, root.path(), dir.path());
    assert_eq!(o.status.code(), Some(10), "{}", text_of(&o));
    assert!(fs::read(&log).unwrap() == want, "appended twice");
    assert!(rss < base + 4 * 1024, "re-run: peak RSS {rss} KiB");

    // An updated drive (another text): appended once, after what the file holds (searched
    // for the text first: not there).
    let other = lines("updated", 2048);
    let updated = iso(dir.path(), "updated", &append_doc(&other));
    let (o, _) = run_measured(&updated, root.path(), dir.path());
    assert_eq!(o.status.code(), Some(0), "{}", text_of(&o));
    let want2 = [want.as_slice(), other.as_bytes()].concat();
    assert!(
        fs::read(&log).unwrap() == want2,
        "the new text not appended once"
    );
    let (o, _) = run_measured(&updated, root.path(), dir.path());
    assert_eq!(o.status.code(), Some(10), "{}", text_of(&o));
    assert!(fs::read(&log).unwrap() == want2);
}

#[test]
fn a_file_changed_after_the_append_is_left_as_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let text = lines("appended", 2 << 20);
    let drive = iso(dir.path(), "d", &append_doc(&text));
    let root = target_root();
    let log = root.path().join("srv/log");
    fs::write(&log, "first\n").unwrap();
    let (o, _) = run_measured(&drive, root.path(), dir.path());
    assert!(o.status.success(), "{}", text_of(&o));
    assert!(fs::read(&log).unwrap() == format!("first\n{text}").as_bytes());
    // Rotated by its owner: the text was appended for this instance, so it is not again.
    fs::write(&log, "rotated\n").unwrap();
    let (o, _) = run_measured(&drive, root.path(), dir.path());
    assert_eq!(o.status.code(), Some(10), "{}", text_of(&o));
    assert_eq!(fs::read(&log).unwrap(), b"rotated\n");
}

#[test]
fn a_text_the_file_holds_from_a_run_stopped_before_its_record_is_not_appended_again() {
    let dir = tempfile::tempdir().unwrap();
    let text = lines("appended", 1 << 20);
    let drive = iso(dir.path(), "d", &append_doc(&text));
    let root = target_root();
    let log = root.path().join("srv/log");
    // The text in the middle of the file (a later line appended after it), no record.
    let held = format!("head\n{text}tail\n");
    fs::write(&log, &held).unwrap();
    let (o, _) = run_measured(&drive, root.path(), dir.path());
    assert!(o.status.success(), "{}", text_of(&o));
    assert!(fs::read(&log).unwrap() == held.as_bytes(), "appended again");
    // One byte of it different: appended.
    let near = held.replacen("appended 7:", "appended 7;", 1);
    fs::write(&log, &near).unwrap();
    let root2 = target_root();
    fs::write(root2.path().join("srv/log"), &near).unwrap();
    let (o, _) = run_measured(&drive, root2.path(), dir.path());
    assert!(o.status.success(), "{}", text_of(&o));
    assert!(fs::read(root2.path().join("srv/log")).unwrap() == format!("{near}{text}").as_bytes());
}

fn text_of(o: &std::process::Output) -> String {
    text(o)
}

#[test]
fn an_append_onto_a_fifo_fails_without_blocking_the_run() {
    // A FIFO planted where an append lands: the facts skip it (not a regular file, opened
    // without blocking) and the writer must not block opening it either (no writer would ever
    // come): the step fails naming it, the run ends, the FIFO is left.
    let dir = tempfile::tempdir().unwrap();
    let drive = iso(dir.path(), "d", &append_doc("text"));
    let root = target_root();
    let fifo = root.path().join("srv/log");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_primer"))
        .args(["run", "--log-level", "error", "--defer-scripts"])
        .args(["--network-backend", "networkd", "--source"])
        .arg(&drive)
        .arg("--root")
        .arg(root.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("primer blocked on the FIFO");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let o = child.wait_with_output().unwrap();
    assert!(
        text_of(&o).contains("not a regular file"),
        "{}",
        text_of(&o)
    );
    use std::os::unix::fs::FileTypeExt;
    assert!(fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());
}

/// A cloud-config of one `append` entry to /srv/log per text, in order.
fn chain_doc(texts: &[String]) -> Vec<u8> {
    let mut doc = String::from("#cloud-config\nwrite_files:\n");
    for t in texts {
        doc.push_str(&format!(
            "  - {{path: /srv/log, append: true, content: \"{}\\n\"}}\n",
            t.trim_end()
        ));
    }
    doc.into_bytes()
}

/// `primer run` of `drive` onto `root` under `strace -f -e trace=<calls>`: its output and the
/// bytes those calls returned in all (what was written, or read).
fn traced_bytes(drive: &Path, root: &Path, dir: &Path, calls: &str) -> (std::process::Output, u64) {
    require_tool("strace");
    let log = dir.join("strace.log");
    let o = std::process::Command::new("strace")
        .args(["-f", "-qq", "-e", &format!("trace={calls}"), "-o"])
        .arg(&log)
        .arg(env!("CARGO_BIN_EXE_primer"))
        .args(["run", "--log-level", "error", "--defer-scripts"])
        .args(["--network-backend", "networkd", "--source"])
        .arg(drive)
        .arg("--root")
        .arg(root)
        .output()
        .unwrap();
    let total = fs::read_to_string(&log)
        .unwrap()
        .lines()
        .filter_map(|l| {
            l.rsplit_once(" = ")?
                .1
                .split_whitespace()
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum();
    fs::remove_file(&log).unwrap();
    (o, total)
}

#[test]
fn a_chain_of_40_appends_copies_the_file_once_and_a_rerun_does_not_scan_it() {
    // 40 small appends to a 16 MiB file: each copied the file into a staged file of its own
    // (640 MiB written, every copy kept until the commit); now the chain extends one. A re-run
    // after the fast path is lost (etc/passwd touched) scanned the file for 39 of the texts
    // (only the last sits at its end); now each is found where the chain puts it.
    let dir = tempfile::tempdir().unwrap();
    let existing = lines("existing", 16 << 20);
    let texts: Vec<String> = (0..40).map(|i| format!("appended line {i}\n")).collect();
    let drive = iso(dir.path(), "d", &chain_doc(&texts));
    let root = target_root();
    let log = root.path().join("srv/log");
    fs::write(&log, &existing).unwrap();
    let (o, written) = traced_bytes(&drive, root.path(), dir.path(), "write,pwrite64");
    assert_eq!(o.status.code(), Some(0), "{}", text_of(&o));
    let want = [existing.clone(), texts.concat()].concat();
    assert!(
        fs::read(&log).unwrap() == want.as_bytes(),
        "not the file then the 40 texts"
    );
    assert!(
        written < 2 * existing.len() as u64,
        "{written} bytes written appending 40 texts to a {} byte file",
        existing.len()
    );
    let left: Vec<_> = fs::read_dir(root.path().join("srv"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(left.len(), 1, "temporary files left: {left:?}");

    // Again: nothing appended.
    let (o, _) = run_measured(&drive, root.path(), dir.path());
    assert_eq!(o.status.code(), Some(10), "{}", text_of(&o));
    assert!(fs::read(&log).unwrap() == want.as_bytes(), "appended again");

    // The fast path lost: the file is measured once, never scanned for the texts.
    let passwd = root.path().join("etc/passwd");
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(5);
    fs::File::options()
        .append(true)
        .open(&passwd)
        .unwrap()
        .set_modified(later)
        .unwrap();
    let (o, read) = traced_bytes(&drive, root.path(), dir.path(), "read,pread64");
    assert_eq!(o.status.code(), Some(10), "{}", text_of(&o));
    assert!(fs::read(&log).unwrap() == want.as_bytes(), "appended again");
    assert!(
        read < 2 * existing.len() as u64,
        "{read} bytes read re-running 40 appends to a {} byte file",
        existing.len()
    );

    // A line added by hand after the chain: the texts are no longer at the file's end, but
    // the record vouches for each, so the file is not scanned for them (it was, 40 times:
    // 1,296 MiB read for this file, review of h7-append2).
    let mut edited = fs::OpenOptions::new().append(true).open(&log).unwrap();
    std::io::Write::write_all(&mut edited, b"added by hand\n").unwrap();
    drop(edited);
    let want = [want, "added by hand\n".to_string()].concat();
    let (o, read) = traced_bytes(&drive, root.path(), dir.path(), "read,pread64");
    assert_eq!(o.status.code(), Some(10), "{}", text_of(&o));
    assert!(fs::read(&log).unwrap() == want.as_bytes(), "appended again");
    assert!(
        read < 2 * existing.len() as u64,
        "{read} bytes read re-running 40 appends to a grown {} byte file",
        existing.len()
    );

    // An updated drive with one more entry: only its text appended.
    let mut more = texts.clone();
    more.push("appended line 40\n".into());
    let updated = iso(dir.path(), "u", &chain_doc(&more));
    let (o, _) = run_measured(&updated, root.path(), dir.path());
    assert_eq!(o.status.code(), Some(0), "{}", text_of(&o));
    assert!(fs::read(&log).unwrap() == [want, more[40].clone()].concat().as_bytes());
}

#[test]
fn append_entries_past_the_cap_are_refused_with_a_warning_naming_each() {
    let dir = tempfile::tempdir().unwrap();
    let texts: Vec<String> = (0..1002).map(|i| format!("x{i}\n")).collect();
    let drive = iso(dir.path(), "d", &chain_doc(&texts));
    let root = target_root();
    let (o, _) = run_measured(&drive, root.path(), dir.path());
    let out = text_of(&o);
    assert!(
        out.contains("write_files[1000]") && out.contains("more than 1000 append entries"),
        "{out}"
    );
    assert!(out.contains("write_files[1001]"), "{out}");
    assert_eq!(
        fs::read_to_string(root.path().join("srv/log")).unwrap(),
        texts[..1000].concat()
    );
}

#[test]
fn an_append_to_a_file_an_earlier_entry_wrote_under_another_name_is_refused_not_lost() {
    // `/srv/link -> log`: a write to /srv/log then an append to /srv/link. Staged from the file
    // as it was, the append's rename would drop the write (the review's case): the append is
    // refused naming the file, the write lands.
    let dir = tempfile::tempdir().unwrap();
    let doc = "#cloud-config\nwrite_files:\n  - path: /srv/log\n    content: X\n  - path: /srv/link\n    append: true\n    content: L\n";
    let drive = iso(dir.path(), "d", doc.as_bytes());
    let root = target_root();
    fs::write(root.path().join("srv/log"), "old\n").unwrap();
    std::os::unix::fs::symlink("log", root.path().join("srv/link")).unwrap();
    let (o, _) = run_measured(&drive, root.path(), dir.path());
    assert!(
        text_of(&o).contains("under another name"),
        "{}",
        text_of(&o)
    );
    assert_eq!(fs::read(root.path().join("srv/log")).unwrap(), b"X");
}

#[test]
fn a_run_killed_at_any_write_or_rename_of_an_append_chain_converges_appending_once() {
    // Three appends to one file (one staged copy) killed at system calls of the run (strace
    // injects SIGKILL at the Nth `write` / `rename`): the next run completes the file with each
    // text exactly once, and the one after changes nothing.
    require_tool("strace");
    let dir = tempfile::tempdir().unwrap();
    let doc = "#cloud-config\nwrite_files:\n  - path: /srv/log\n    append: true\n    content: |\n      A\n  - path: /srv/log\n    append: true\n    content: |\n      B\n  - path: /srv/log\n    append: true\n    content: |\n      C\n";
    let drive = iso(dir.path(), "d", doc.as_bytes());
    let mut kills = 0;
    for call in ["write", "rename"] {
        for n in [1, 2, 3, 5, 8, 13, 21] {
            let root = target_root();
            let log = root.path().join("srv/log");
            fs::write(&log, "old\n").unwrap();
            let o = std::process::Command::new("strace")
                .args(["-f", "-qq", "-o", "/dev/null", "-e"])
                .arg(format!("inject={call}:signal=KILL:when={n}"))
                .arg(env!("CARGO_BIN_EXE_primer"))
                .args(["run", "--log-level", "error", "--defer-scripts"])
                .args(["--network-backend", "networkd", "--source"])
                .arg(&drive)
                .arg("--root")
                .arg(root.path())
                .output()
                .unwrap();
            if o.status.code().is_none() || o.status.code() == Some(137) {
                kills += 1;
            }
            let (o, _) = run_measured(&drive, root.path(), dir.path());
            assert!(
                matches!(o.status.code(), Some(0) | Some(10)),
                "{call} #{n}: {}",
                text_of(&o)
            );
            assert_eq!(
                fs::read_to_string(&log).unwrap(),
                "old\nA\nB\nC\n",
                "{call} #{n}"
            );
            let (o, _) = run_measured(&drive, root.path(), dir.path());
            assert_eq!(o.status.code(), Some(10), "{call} #{n}: {}", text_of(&o));
            assert_eq!(fs::read_to_string(&log).unwrap(), "old\nA\nB\nC\n");
        }
    }
    assert!(kills > 0, "strace killed no run");
}

/// An `append` onto a file the drive also injects (`meta_data.json` `files`, planned first)
/// builds on the injected content on the first boot, and a re-run changes nothing. It was
/// planned onto the file as the facts saw it (missing): the writer found the injected file
/// there and refused the append, failing the first boot (adversarial review, session 17).
#[test]
fn an_append_onto_an_injected_file_applies_on_the_first_boot() {
    let dir = tempfile::tempdir().unwrap();
    let doc = b"#cloud-config\nwrite_files:\n  - {path: /etc/injected, content: \"app\\n\", append: true}\n";
    let tree = config2_tree(dir.path(), "d", doc);
    let root = target_root();
    let file = root.path().join("etc/injected");
    for n in 0..3 {
        let (o, _) = run_measured(&tree, root.path(), dir.path());
        assert_eq!(
            o.status.code(),
            Some(if n == 0 { 0 } else { 10 }),
            "run {n}: {}",
            text_of(&o)
        );
        assert_eq!(fs::read(&file).unwrap(), b"injected\napp\n", "run {n}");
    }
}
