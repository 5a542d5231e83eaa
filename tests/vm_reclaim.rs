//! Reclaim in real guests (issue 12): the Debian test guest boots with `reclaim.enabled: true`,
//! primer.service applies the drive from the trailing config partition, primer-reclaim.service
//! deletes that partition, grows root to the end of the disk and grows the mounted filesystem
//! online; a second boot must show the kernel reading the new table, the filesystem spanning
//! it, the local copy intact, and primer-reclaim exiting 13 ("nothing to reclaim") without the
//! unit failing. After poweroff the image itself is checked: `sgdisk -v` / `sfdisk --verify`
//! and the filesystem's own checker (`e2fsck -fn`, `xfs_repair -n`, `btrfs check --readonly`).
//!
//! Guests (two boots each): ext4 root on GPT with config right after root (the test image's
//! layout); XFS root on GPT with Ironic's gap layout (free space between root and config, config
//! unnamed type 8300); btrfs root on an MBR disk (config primary 0x0c). One more guest kills the
//! test build of primer at every fault point of a live reclaim, one extra disk per point (root of
//! that disk mounted), powers off, boots again and re-runs: every disk converges to the table a
//! run without faults writes.
//!
//! Environment as tests/vm.rs (PRIMER_DEB, PRIMER_VM_KEEP=1, PRIMER_VM_CACHE).

mod common;
#[path = "vm_common/mod.rs"]
mod vm_common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::require_tool;
use vm_common::*;

const MIB: u64 = 1 << 20;
/// Root partition of the test image: 640 MiB from sector 2048.
const ROOT_MIB: u64 = 640;

/// Runs a checker; returns its output, asserting success.
fn check(prog: &str, args: &[&str]) -> String {
    require_tool(prog);
    let o = Command::new(prog).args(args).output().unwrap();
    let out = common::text(&o);
    assert!(o.status.success(), "{prog} {args:?}:\n{out}");
    out
}

/// The guest disk as a raw image (for the table and filesystem checkers).
fn raw(disk: &Path, dir: &Path, name: &str) -> PathBuf {
    let out = dir.join(format!("{name}.raw"));
    sh(Command::new("qemu-img")
        .args(["convert", "-O", "raw"])
        .arg(disk)
        .arg(&out));
    out
}

/// `sfdisk --dump` partition lines, the device name removed: `start=..., size=..., type=...`.
fn parts(raw: &Path) -> Vec<String> {
    let d = sh(Command::new("sfdisk").arg("--dump").arg(raw));
    d.lines()
        .filter_map(|l| l.split_once(" : ").map(|(_, r)| r.to_string()))
        .collect()
}

fn field(line: &str, key: &str) -> u64 {
    line.split(',')
        .filter_map(|f| f.trim().split_once('='))
        .find(|(k, _)| k.trim() == key)
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {key} in {line:?}"))
}

/// Root's last sector after reclaim: the last usable sector, size aligned down to 1 MiB.
fn root_end(limit: u64) -> u64 {
    (limit + 1) / 2048 * 2048 - 1
}

/// The drive tree's files by path relative to the drive root, with their sha256.
fn tree_hashes(tree: &Path) -> BTreeMap<String, String> {
    let out = sh(Command::new("sh")
        .arg("-c")
        .arg("find . -type f | sort | xargs sha256sum")
        .current_dir(tree));
    out.lines()
        .filter_map(|l| l.split_once("  "))
        .map(|(h, p)| (p.trim_start_matches("./").to_string(), h.to_string()))
        .collect()
}

/// One reclaim guest: `opts` for build-image.sh, the root filesystem type, the initrd modules
/// it needs, the checker run on root after poweroff.
struct Variant {
    name: &'static str,
    opts: &'static [&'static str],
    fs: &'static str,
    modules: &'static [&'static str],
    checker: &'static [&'static str],
    mbr: bool,
}

fn reclaim_guest(v: &Variant) {
    assets();
    let (_, public) = keypair();
    let (base, off, len) = image_with(v.opts, "reclaim", Some(deb()));
    let initrd = (!v.modules.is_empty()).then(|| initrd_with(v.modules));
    let w = Work::on(v.name, &base, (off, len));
    let iso = drive(&w.path, "drive", &[public]);
    // The base image is raw: its table read in place (sfdisk only reads).
    let before = parts(&base);
    assert_eq!(before.len(), 2, "{before:?}");
    let disk_sectors = fs::metadata(&base).unwrap().len() / 512;

    let extra = Extra {
        initrd: initrd.clone(),
        append: "primer_e2e.reclaim=1".into(),
        disks: Vec::new(),
        // Boots took up to 190 s wall here under load (two guests, builds, a fuzz campaign).
        deadline: Some(Duration::from_secs(420)),
    };
    let r1 = Boot {
        work: &w,
        attach: Attach::Partition,
        drive: Some(iso.clone()),
        ssh: None,
        nics: &[],
        extra: extra.clone(),
    }
    .run();
    println!("{}", r1.timing(v.name));
    let ctx = |r: &Report| format!("reclaim journal:\n{}", r.all("reclaim_journal").join("\n"));
    assert_applied(&r1, v.name, &[public]);
    assert_eq!(r1.get("root_fstype"), v.fs, "[{}]", v.name);
    assert_eq!(r1.get("reclaim_status"), "0", "[{}] {}", v.name, ctx(&r1));
    assert_eq!(r1.get("reclaim_result"), "success", "[{}]", v.name);
    assert_eq!(r1.get("reclaim_rerun"), "13", "[{}] {}", v.name, ctx(&r1));

    // Root now ends at the last usable sector (GPT: before the backup table; MBR: the disk's
    // last sector), aligned down to 1 MiB; the config partition is gone from the kernel.
    let limit = if v.mbr {
        disk_sectors - 1
    } else {
        disk_sectors - 34
    };
    let root_sectors = root_end(limit) + 1 - 2048;
    assert_eq!(
        r1.all("sys_part"),
        vec![format!("vda1 2048 {root_sectors}")],
        "[{}] {}",
        v.name,
        ctx(&r1)
    );
    let journal = r1.all("reclaim_journal").join("\n");
    let grow = journal
        .lines()
        .find(|l| l.contains(" grown to ") && l.contains(" ms ("))
        .unwrap_or_else(|| panic!("[{}] no grow line in:\n{journal}", v.name))
        .to_string();
    println!(
        "[{}] reclaim.service {} ms (TCG); {grow}",
        v.name,
        r1.get("reclaim_ms")
    );

    // Second boot: the kernel reads the new table; nothing left to reclaim.
    let r2 = Boot {
        work: &w,
        attach: Attach::None,
        drive: None,
        ssh: None,
        nics: &[],
        extra,
    }
    .run();
    println!("{}", r2.timing(&format!("{}-reboot", v.name)));
    assert_eq!(r2.get("reclaim_status"), "13", "[{}] {}", v.name, ctx(&r2));
    assert_eq!(r2.get("reclaim_result"), "success", "[{}]", v.name);
    assert_eq!(r2.get("reclaim_rerun"), "13", "[{}]", v.name);
    assert!(
        !r2.get("failed_units").contains("primer"),
        "[{}] failed units: {}",
        v.name,
        r2.get("failed_units")
    );
    assert_eq!(
        r2.all("sys_part"),
        vec![format!("vda1 2048 {root_sectors}")],
        "[{}]",
        v.name
    );
    let lsblk = r2.all("lsblk").join("\n");
    assert!(
        lsblk.contains(&format!("vda1 {} part", root_sectors * 512)) && !lsblk.contains("vda2"),
        "[{}] lsblk:\n{lsblk}",
        v.name
    );
    // df: the filesystem spans the grown partition (more than the old partition held).
    let df: u64 = r2.get("df_root").parse().unwrap_or(0);
    assert!(
        df > ROOT_MIB * MIB && df <= root_sectors * 512,
        "[{}] df / = {df} bytes, partition {} bytes",
        v.name,
        root_sectors * 512
    );
    assert_eq!(r1.get("df_root"), r2.get("df_root"), "[{}]", v.name);
    // The local copy: every file of the drive, byte for byte, on both boots.
    let want = tree_hashes(&w.path.join("drive-tree"));
    let local: BTreeMap<String, String> = r2
        .all("local_file")
        .iter()
        .filter_map(|l| l.split_once(' '))
        .map(|(h, p)| (p.to_string(), h.to_string()))
        .collect();
    assert!(want.len() >= 3, "{want:?}");
    assert_eq!(local, want, "[{}] local copy", v.name);
    assert_eq!(r1.all("local_file"), r2.all("local_file"));

    // After poweroff, on the image: the table and the filesystem.
    let img = raw(&w.disk(), &w.path, "disk");
    let after = parts(&img);
    assert_eq!(after.len(), 1, "[{}] {after:?}", v.name);
    assert_eq!(field(&after[0], "start"), 2048);
    assert_eq!(field(&after[0], "size"), root_sectors);
    // Everything else about root's entry unchanged (type, GUID, name).
    let rest = |l: &str| -> String {
        l.split(',')
            .filter(|f| !f.trim().starts_with("size="))
            .collect::<Vec<_>>()
            .join(",")
    };
    assert_eq!(rest(&after[0]), rest(&before[0]), "[{}]", v.name);
    let img_s = img.to_str().unwrap();
    if v.mbr {
        check("sfdisk", &["--verify", img_s]);
    } else {
        let out = check("sgdisk", &["-v", img_s]);
        assert!(out.contains("No problems found"), "[{}] {out}", v.name);
    }
    // No ISO 9660 volume descriptor left where the config drive was.
    let mut cd = vec![0u8; 6];
    {
        use std::os::unix::fs::FileExt;
        fs::File::open(&img)
            .unwrap()
            .read_exact_at(&mut cd, off + 32768)
            .unwrap();
    }
    assert_ne!(
        &cd[1..6],
        b"CD001",
        "[{}] the config drive is still there",
        v.name
    );
    let p1 = w.path.join("p1.raw");
    sh(Command::new("dd")
        .arg(format!("if={}", img.display()))
        .arg(format!("of={}", p1.display()))
        .args(["bs=1M", "skip=1", &format!("count={}", root_sectors / 2048)])
        .args(["conv=sparse", "status=none"]));
    let _ = fs::remove_file(&img);
    let mut args = v.checker[1..].to_vec();
    let p1s = p1.to_str().unwrap().to_string();
    args.push(&p1s);
    let out = check(v.checker[0], &args);
    println!(
        "[{}] after poweroff: table clean, {} clean ({} lines)",
        v.name,
        v.checker.join(" "),
        out.lines().count()
    );
    let _ = fs::remove_file(&p1);
}

#[test]
fn reclaim_ext4_gpt_abutting() {
    reclaim_guest(&Variant {
        name: "reclaim-ext4",
        opts: &[],
        fs: "ext4",
        modules: &[],
        checker: &["e2fsck", "-fn"],
        mbr: false,
    });
}

#[test]
fn reclaim_xfs_gpt_ironic_gap() {
    require_tool("xfs_repair");
    reclaim_guest(&Variant {
        name: "reclaim-xfs-ironic",
        opts: &["--fs", "xfs", "--layout", "ironic"],
        fs: "xfs",
        modules: &["xfs"],
        checker: &["xfs_repair", "-n", "-f"],
        mbr: false,
    });
}

#[test]
fn reclaim_btrfs_mbr() {
    require_tool("btrfs");
    reclaim_guest(&Variant {
        name: "reclaim-btrfs-mbr",
        opts: &["--fs", "btrfs", "--table", "mbr"],
        fs: "btrfs",
        modules: &["btrfs"],
        checker: &["btrfs", "check", "--readonly"],
        mbr: true,
    });
}

/// Fault disks: 48 MiB ext4 root (label froot, a 1 MiB data file), the last 64 MiB for config.
const FAULT_DISK_MIB: u64 = 1 + 48 + 64 + 1;
/// Fault points tried (`f1`..`fN`); the last ones must complete without a fault.
const FAULT_POINTS: u32 = 11;

fn data_pattern() -> Vec<u8> {
    (0..MIB as u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect()
}

fn fault_template(dir: &Path) -> PathBuf {
    let t = dir.join("fault-template.img");
    let tree = dir.join("fault-root");
    fs::create_dir_all(&tree).unwrap();
    fs::write(tree.join("data"), data_pattern()).unwrap();
    sh(Command::new("truncate")
        .args(["-s", &format!("{}M", FAULT_DISK_MIB)])
        .arg(&t));
    sh(Command::new("sgdisk")
        .args(["-o", "-n", "1:2048:+48M", "-t", "1:8300", "-c", "1:froot"])
        .args(["-n", "2:-64M:0", "-t", "2:0700"])
        .arg(&t));
    sh(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-L", "froot", "-d"])
        .arg(&tree)
        .args(["-E", "offset=1048576"])
        .arg(&t)
        .arg("48M"));
    t
}

#[test]
fn reclaim_fault_at_each_write_point_converges() {
    assets();
    let (_, public) = keypair();
    let (base, off, len) = image_with(&[], "reclaim", Some(deb()));
    let w = Work::on("reclaim-fault", &base, (off, len));
    let iso = drive(&w.path, "drive", &[public]);
    // The test build of primer (fault switches compiled in), without its debug info, and the
    // drive, as a tar on a raw disk the guest unpacks.
    let tools = w.path.join("tools");
    fs::create_dir_all(&tools).unwrap();
    sh(Command::new("objcopy")
        .arg("--strip-debug")
        .arg(env!("CARGO_BIN_EXE_primer"))
        .arg(tools.join("primer")));
    fs::copy(&iso, tools.join("drive.iso")).unwrap();
    let tar = w.path.join("tools.tar");
    sh(Command::new("tar")
        .arg("-cf")
        .arg(&tar)
        .arg("-C")
        .arg(&tools)
        .args(["primer", "drive.iso"]));
    let template = fault_template(&w.path);
    let mut names: Vec<String> = ["ref", "mounted", "torn-header", "torn-entries"]
        .map(String::from)
        .to_vec();
    names.extend((1..=FAULT_POINTS).map(|k| format!("f{k}")));
    let mut disks = vec![(tar.clone(), "raw", "tools".to_string(), true)];
    for n in &names {
        let d = w.path.join(format!("{n}.qcow2"));
        sh(Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b"])
            .arg(&template)
            .arg(&d));
        disks.push((d, "qcow2", n.clone(), false));
    }
    let r1 = Boot {
        work: &w,
        attach: Attach::Partition,
        drive: Some(iso),
        ssh: None,
        nics: &[],
        extra: Extra {
            initrd: None,
            append: "primer_e2e.fault=1".into(),
            disks: disks.clone(),
            // Fifteen reclaim runs after the boot: ~90 s more under TCG on a loaded machine.
            deadline: Some(Duration::from_secs(480)),
        },
    }
    .run();
    println!("{}", r1.timing("reclaim-fault"));
    assert_eq!(r1.get("fault_error"), "", "{}", r1.serial);
    let first: BTreeMap<String, String> = r1
        .all("fault1")
        .iter()
        .filter_map(|l| l.split_once(' '))
        .map(|(n, rest)| (n.to_string(), rest.to_string()))
        .collect();
    // Every disk but `mounted` (reported on its own below).
    assert_eq!(first.len(), names.len() - 1, "{first:?}\n{}", r1.serial);
    assert!(first["ref"].starts_with("rc=0"), "{first:?}");
    // The disk whose config partition was mounted: refused, naming the device and where.
    let m = r1.get("fault_mounted");
    let dev = m
        .split_whitespace()
        .find_map(|f| f.strip_prefix("dev="))
        .unwrap_or("?");
    assert!(
        m.starts_with("rc=14 ") && m.contains(&format!("{dev} mounted on /mnt/mounted-config")),
        "config mounted: {m}"
    );
    // SIGABRT (134) at every point up to the last one; past it the run completes.
    let mut points = Vec::new();
    let mut completed = 0;
    for k in 1..=FAULT_POINTS {
        let f = &first[&format!("f{k}")];
        if f.starts_with("rc=134 ") {
            assert_eq!(completed, 0, "a fault after a complete run: {first:?}");
            points.push(format!(
                "{k}: {}",
                f.trim_start_matches("rc=134 aborting after ")
            ));
        } else {
            assert!(f.starts_with("rc=0"), "f{k}: {f}");
            completed += 1;
        }
    }
    assert!(
        completed > 0,
        "every one of {FAULT_POINTS} points faulted: raise FAULT_POINTS ({first:?})"
    );
    for t in ["torn-header", "torn-entries"] {
        assert!(first[t].starts_with("rc=134"), "{t}: {}", first[t]);
    }
    println!("[reclaim-fault] fault points of a live reclaim: {points:?}");

    // Power off (done), boot again: the kernel parses every disk as it was left.
    let r2 = Boot {
        work: &w,
        attach: Attach::None,
        drive: None,
        ssh: None,
        nics: &[],
        extra: Extra {
            initrd: None,
            // The leftover config partitions are duplicates of the applied drive: primer.service
            // would refuse them (probe.duplicates), which is not what this guest checks.
            append: "primer_e2e.fault=2 systemd.mask=primer.service".into(),
            disks,
            deadline: Some(Duration::from_secs(480)),
        },
    }
    .run();
    println!("{}", r2.timing("reclaim-fault-reboot"));
    let second: BTreeMap<String, String> = r2
        .all("fault2")
        .iter()
        .filter_map(|l| l.split_once(' '))
        .map(|(n, rest)| (n.to_string(), rest.to_string()))
        .collect();
    assert_eq!(second.len(), names.len(), "{second:?}\n{}", r2.serial);
    let kv = |s: &str, k: &str| -> String {
        s.split_whitespace()
            .find_map(|f| f.strip_prefix(&format!("{k}=")))
            .unwrap_or("")
            .to_string()
    };
    use sha2::Digest;
    let data = format!("{:x}", sha2::Sha256::digest(data_pattern()));
    let reference = &second["ref"];
    for n in &names {
        let s = &second[n];
        let log = r2.all(&format!("fault_log:{n}")).join("\n");
        let rcs = kv(s, "rcs");
        assert!(
            rcs.ends_with(",13") && rcs.split(',').all(|c| c == "0" || c == "13"),
            "[{n}] runs after the reboot: {s}\n{log}"
        );
        assert_eq!(kv(s, "p1"), kv(reference, "p1"), "[{n}] {s}\n{log}");
        // The kernel has root only: the config partition is gone.
        assert_eq!(kv(s, "kernel").matches(',').count(), 1, "[{n}] {s}");
        assert_eq!(kv(s, "df"), kv(reference, "df"), "[{n}] {s}\n{log}");
        assert_eq!(kv(s, "data"), data, "[{n}] root data changed");
        println!(
            "[reclaim-fault] {n}: {} -> after reboot {s}",
            first.get(n).map_or(m, String::as_str)
        );
    }
    // After poweroff: every disk holds the table the run without faults wrote, clean.
    let ref_raw = raw(&w.path.join("ref.qcow2"), &w.path, "ref");
    let want = parts(&ref_raw);
    assert_eq!(want.len(), 1, "{want:?}");
    assert_eq!(
        field(&want[0], "size"),
        root_end(FAULT_DISK_MIB * 2048 - 34) + 1 - 2048
    );
    let _ = fs::remove_file(&ref_raw);
    for n in &names {
        let img = raw(&w.path.join(format!("{n}.qcow2")), &w.path, n);
        let s = img.to_str().unwrap();
        let out = check("sgdisk", &["-v", s]);
        assert!(out.contains("No problems found"), "[{n}] {out}");
        assert_eq!(parts(&img), want, "[{n}]");
        check("e2fsck", &["-fn", &format!("{s}?offset={ROOT_OFFSET}")]);
        let _ = fs::remove_file(&img);
    }
}
