//! The real-guest harness shared by the VM test targets (`tests/vm.rs`, `tests/vm_reclaim.rs`):
//! images built by images/test-vm/, QEMU (TCG) boots with a config drive attached, the guest's
//! serial report parsed, files read back from the disk image after poweroff. Included by each
//! target with `#[path]`; not a test target itself.
#![allow(dead_code)]
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::common::{self, require_tool, text};

pub const ROOT_OFFSET: u64 = 1 << 20;
pub const INSTANCE: &str = "vm-e2e-0001";
pub const FQDN: &str = "vm-guest.example.test";

pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

pub fn sh(cmd: &mut Command) -> String {
    let o = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(o.status.success(), "{cmd:?} failed: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Kernel, initrd and base disk images, built once per test process (cached on disk).
pub struct Assets {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub base: PathBuf,
    pub cfg_offset: u64,
    pub cfg_len: u64,
}

pub fn image(variant: &str, deb: Option<&Path>) -> (PathBuf, u64, u64) {
    image_with(&[], variant, deb)
}

/// The image of a variant built with build-image.sh's options (`--fs xfs`, `--table mbr`,
/// `--layout ironic`).
pub fn image_with(opts: &[&str], variant: &str, deb: Option<&Path>) -> (PathBuf, u64, u64) {
    let mut c = Command::new(repo().join("images/test-vm/build-image.sh"));
    c.args(opts).arg(variant);
    if let Some(d) = deb {
        c.arg(d);
    }
    let out = sh(&mut c);
    let f: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(f.len(), 3, "build-image.sh printed {out:?}");
    (
        PathBuf::from(f[0]),
        f[1].parse().unwrap(),
        f[2].parse().unwrap(),
    )
}

pub fn kernel_and_initrd() -> (PathBuf, PathBuf) {
    let k = sh(&mut Command::new(
        repo().join("images/test-vm/build-kernel.sh"),
    ));
    let mut lines = k.lines();
    let kernel = PathBuf::from(lines.next().unwrap());
    let mods = lines.next().unwrap().to_string();
    let initrd = sh(Command::new(repo().join("images/test-vm/build-initrd.sh")).arg(mods));
    (kernel, PathBuf::from(initrd.trim()))
}

/// An initrd that also loads `modules` (with their dependencies) before looking for root.
pub fn initrd_with(modules: &[&str]) -> PathBuf {
    let k = sh(&mut Command::new(
        repo().join("images/test-vm/build-kernel.sh"),
    ));
    let mods = k.lines().nth(1).unwrap().to_string();
    let initrd = sh(Command::new(repo().join("images/test-vm/build-initrd.sh"))
        .arg(mods)
        .args(modules));
    PathBuf::from(initrd.trim())
}

pub fn assets() -> &'static Assets {
    static A: OnceLock<Assets> = OnceLock::new();
    A.get_or_init(|| {
        for tool in [
            "qemu-system-x86_64",
            "qemu-img",
            "qemu-io",
            "mmdebstrap",
            "sgdisk",
            "mkfs.ext4",
            "debugfs",
            "genisoimage",
            "ssh",
            "cpio",
        ] {
            require_tool(tool);
        }
        let (kernel, initrd) = kernel_and_initrd();
        let (base, cfg_offset, cfg_len) = image("base", Some(deb()));
        Assets {
            kernel,
            initrd,
            base,
            cfg_offset,
            cfg_len,
        }
    })
}

/// The primer package installed in the guests, built once.
pub fn deb() -> &'static Path {
    static D: OnceLock<PathBuf> = OnceLock::new();
    D.get_or_init(|| match std::env::var_os("PRIMER_DEB") {
        Some(d) => PathBuf::from(d),
        None => {
            // A separate target dir: the outer `cargo test` may hold the default one.
            let out = sh(Command::new(repo().join("packaging/build-deb.sh"))
                .env("CARGO_TARGET_DIR", repo().join("target/vm-build"))
                .arg(repo().join("target/vm-build/debian")));
            PathBuf::from(out.trim())
        }
    })
}

/// The base image of another variant (`ifupdown`, `nm`) with primer installed, built once.
pub fn variant_image(variant: &str) -> (PathBuf, u64, u64) {
    static M: std::sync::Mutex<BTreeMap<String, (PathBuf, u64, u64)>> =
        std::sync::Mutex::new(BTreeMap::new());
    assets();
    let mut m = M.lock().unwrap_or_else(|e| e.into_inner());
    m.entry(variant.to_string())
        .or_insert_with(|| image(variant, Some(deb())))
        .clone()
}

/// An SSH key pair for the drive, generated once.
pub fn keypair() -> &'static (PathBuf, String) {
    static K: OnceLock<(tempfile::TempDir, PathBuf, String)> = OnceLock::new();
    let k = K.get_or_init(|| {
        let d = tempfile::tempdir().unwrap();
        let key = d.path().join("id_ed25519");
        sh(Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "vm-test", "-f"])
            .arg(&key));
        let public = fs::read_to_string(key.with_extension("pub"))
            .unwrap()
            .trim()
            .to_string();
        (d, key, public)
    });
    // Leak-free static view of the pair.
    static V: OnceLock<(PathBuf, String)> = OnceLock::new();
    V.get_or_init(|| (k.1.clone(), k.2.clone()))
}

/// Runs `cmd` in the guest over SSH (forwarded `port`) as `user` with the private `key`.
pub fn ssh_as(key: &Path, port: u16, user: &str, cmd: &str) -> std::process::Output {
    ssh_with(
        &["StrictHostKeyChecking=no", "UserKnownHostsFile=/dev/null"],
        key,
        port,
        user,
        cmd,
    )
}

/// `ssh` with the host key options `host`, batch mode, a 10 s connect timeout and errors only.
fn ssh_with(host: &[&str], key: &Path, port: u16, user: &str, cmd: &str) -> std::process::Output {
    let mut c = Command::new("ssh");
    for o in host
        .iter()
        .chain(&["BatchMode=yes", "ConnectTimeout=10", "LogLevel=ERROR"])
    {
        c.args(["-o", o]);
    }
    c.arg("-i")
        .arg(key)
        .args(["-p", &port.to_string(), &format!("{user}@127.0.0.1"), cmd])
        .output()
        .unwrap()
}

/// Builds a config-drive ISO (primer's `make-drive`, label config-2) holding `keys` for the test
/// instance; its tree is `<dir>/<name>-tree`.
pub fn drive(dir: &Path, name: &str, keys: &[&str]) -> PathBuf {
    drive_for(dir, name, keys, INSTANCE)
}

/// The drive tree `drive` images: meta_data.json for `instance` holding `keys`.
pub fn drive_tree(dir: &Path, name: &str, keys: &[&str], instance: &str) -> PathBuf {
    let tree = dir.join(format!("{name}-tree"));
    let pk: serde_json::Map<String, serde_json::Value> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| (format!("k{i}"), (*k).into()))
        .collect();
    let meta = serde_json::json!({"uuid": instance, "hostname": FQDN, "name": "vm guest", "public_keys": pk});
    common::write_drive_tree(&tree, &meta);
    tree
}

/// `drive` for the instance id `instance`. The guests only need *a* drive, so primer makes it
/// (genisoimage's images are proven against the reader in tests/reader.rs and tests/formats.rs).
pub fn drive_for(dir: &Path, name: &str, keys: &[&str], instance: &str) -> PathBuf {
    let tree = drive_tree(dir, name, keys, instance);
    let iso = dir.join(format!("{name}.iso"));
    common::make_drive(&tree, &iso, common::DriveFs::Iso9660, "config-2");
    iso
}

/// A guest's work directory: overlay disk, drives, serial log. Kept on failure or on request.
pub struct Work {
    pub dir: Option<tempfile::TempDir>,
    pub path: PathBuf,
    pub name: String,
    /// Byte offset and length of the trailing config partition.
    pub cfg: (u64, u64),
}

impl Work {
    pub fn new(name: &str) -> Work {
        let a = assets();
        Work::on(name, &a.base, (a.cfg_offset, a.cfg_len))
    }

    /// A work dir whose disk is an overlay of `base`.
    pub fn on(name: &str, base: &Path, cfg: (u64, u64)) -> Work {
        let dir = tempfile::Builder::new()
            .prefix(&format!("primer-vm-{name}-"))
            .tempdir()
            .unwrap();
        let path = dir.path().to_path_buf();
        sh(Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b"])
            .arg(base)
            .arg(path.join("disk.qcow2")));
        Work {
            dir: Some(dir),
            path,
            name: name.to_string(),
            cfg,
        }
    }

    pub fn disk(&self) -> PathBuf {
        self.path.join("disk.qcow2")
    }

    /// Writes a drive image into the trailing partition of the overlay.
    pub fn write_partition(&self, iso: &Path) {
        let (offset, cfg_len) = self.cfg;
        let len = fs::metadata(iso).unwrap().len();
        assert!(len <= cfg_len, "drive larger than the config partition");
        // Zero the partition first so a smaller new drive leaves no stale bytes.
        sh(Command::new("qemu-io")
            .arg("-c")
            .arg(format!("write -z {offset} {cfg_len}"))
            .arg(self.disk()));
        sh(Command::new("qemu-io")
            .arg("-c")
            .arg(format!("write -s {} {offset} {len}", iso.display()))
            .arg(self.disk()));
    }

    /// Puts `tree` into the disk's trailing config partition the way an operator would with
    /// `primer make-drive --into` (Ironic's placement): the disk is flattened to raw, the base
    /// image's empty config partition (number 2) is deleted, make-drive places a new one of the
    /// same size at the end of the largest free block and writes the ISO into it, and the raw
    /// disk becomes the guest's disk. Returns the new partition as `sgdisk -i 2` prints it.
    pub fn make_partition(&self, tree: &Path) -> String {
        let raw = self.path.join("disk-into.raw");
        sh(Command::new("qemu-img")
            .args(["convert", "-O", "raw"])
            .arg(self.disk())
            .arg(&raw));
        sh(Command::new("sgdisk").args(["-d", "2"]).arg(&raw));
        common::make_drive_into(tree, &raw, common::DriveFs::Iso9660, "config-2", self.cfg.1);
        let info = sh(Command::new("sgdisk").args(["-i", "2"]).arg(&raw));
        sh(Command::new("qemu-img")
            .args(["convert", "-O", "qcow2"])
            .arg(&raw)
            .arg(self.disk()));
        let _ = fs::remove_file(&raw);
        info
    }

    /// Reads a file from the guest's root filesystem after poweroff (no mount: debugfs).
    pub fn read_guest_file(&self, path: &str) -> String {
        let raw = self.path.join("disk.raw");
        sh(Command::new("qemu-img")
            .args(["convert", "-O", "raw"])
            .arg(self.disk())
            .arg(&raw));
        let out = sh(Command::new("debugfs")
            .args(["-R", &format!("cat {path}")])
            .arg(format!("{}?offset={ROOT_OFFSET}", raw.display())));
        let _ = fs::remove_file(&raw);
        out
    }
}

impl Drop for Work {
    fn drop(&mut self) {
        if std::thread::panicking() || std::env::var_os("PRIMER_VM_KEEP").is_some() {
            if let Some(d) = self.dir.take() {
                let kept = d.keep();
                eprintln!("[{}] guest work dir kept: {}", self.name, kept.display());
            }
        }
    }
}

#[derive(Clone, Copy)]
pub enum Attach {
    None,
    Partition,
    CdRom,
    SecondDisk,
}

/// The report a guest printed, and how the boot went.
pub struct Report {
    pub kv: Vec<(String, String)>,
    pub serial: String,
    pub wall: Duration,
}

impl Report {
    pub fn get(&self, k: &str) -> &str {
        self.kv
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    }
    pub fn all(&self, k: &str) -> Vec<&str> {
        self.kv
            .iter()
            .filter(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
            .collect()
    }
    pub fn us(&self, k: &str) -> u64 {
        self.get(k).parse().unwrap_or(0)
    }
    pub fn journal(&self) -> String {
        self.all("journal").join("\n")
    }
    /// Steps the journal reports with a given outcome (`changed`, `unchanged`...): the step
    /// table's rows on stdout, and, under the journal, the events of changed (info) and failed
    /// (error) steps, which stdout does not repeat (issue 16: each event once).
    pub fn steps(&self, outcome: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .all("journal")
            .iter()
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                (w.next() == Some(outcome)).then(|| w.next().unwrap_or("").to_string())
            })
            .collect();
        // tracing-journald's priorities: INFO is 5 (notice), ERROR 3.
        let priority = match outcome {
            "changed" => "5",
            "failed" => "3",
            _ => return v,
        };
        v.extend(self.all("journal_step").iter().filter_map(|l| {
            l.split_once(' ')
                .filter(|(p, _)| *p == priority)
                .map(|(_, s)| s.to_string())
        }));
        v
    }
    /// One line for the test output: boot and primer timings.
    pub fn timing(&self, name: &str) -> String {
        let primer_ms = self
            .us("primer_exit_us")
            .saturating_sub(self.us("primer_start_us")) as f64
            / 1000.0;
        format!(
            "[{name}] boot to E2E report {}s (guest uptime), qemu wall {:.1}s, primer.service {primer_ms:.0} ms (TCG)",
            self.get("uptime"),
            self.wall.as_secs_f64()
        )
    }
}

pub struct Boot<'a> {
    pub work: &'a Work,
    pub attach: Attach,
    pub drive: Option<PathBuf>,
    /// Keep the guest up for SSH (seconds), with a forwarded port.
    pub ssh: Option<(u16, u32)>,
    /// Extra virtio NICs, by MAC, each on its own restricted user network; the guest waits
    /// for its network backend and reports the network state.
    pub nics: &'a [&'a str],
    /// More kernel arguments and disks (the reclaim scenarios).
    pub extra: Extra,
}

/// What a scenario adds to a boot: kernel arguments, and disks after the boot disk, each
/// `(image, format, virtio serial, read-only)`.
#[derive(Default, Clone)]
pub struct Extra {
    /// Another initrd (one loading the XFS or btrfs module).
    pub initrd: Option<PathBuf>,
    pub append: String,
    pub disks: Vec<(PathBuf, &'static str, String, bool)>,
    /// A longer bound on the boot than the default 240 s (a guest with much work to do).
    pub deadline: Option<Duration>,
}

pub fn parallel_cpus() -> &'static str {
    // Tests run two at a time on the 2-core CI machine: one vCPU each.
    "1"
}

impl Boot<'_> {
    pub fn spawn(&self) -> (Child, PathBuf) {
        let a = assets();
        // One log per boot of this work dir: serial-1.log, serial-2.log, ...
        let n = fs::read_dir(&self.work.path)
            .map(|d| {
                d.flatten()
                    .filter(|e| e.file_name().to_string_lossy().starts_with("serial-"))
                    .count()
            })
            .unwrap_or(0);
        let serial = self.work.path.join(format!("serial-{}.log", n + 1));
        let mut append = String::from(
            "console=ttyS0 root=LABEL=root rw panic=-1 quiet systemd.mask=systemd-logind.service \
             systemd.mask=serial-getty@ttyS0.service systemd.condition-first-boot=1",
        );
        if let Some((_, hold)) = self.ssh {
            append.push_str(&format!(" primer_e2e.hold={hold}"));
        }
        if !self.nics.is_empty() {
            append.push_str(" primer_e2e.net=1");
        }
        if !self.extra.append.is_empty() {
            append.push(' ');
            append.push_str(&self.extra.append);
        }
        let mut c = Command::new("qemu-system-x86_64");
        c.args([
            "-accel",
            "tcg,thread=multi",
            "-cpu",
            "max",
            "-M",
            "q35",
            "-m",
            "1024",
            "-smp",
            parallel_cpus(),
        ])
        .args([
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-no-reboot",
        ])
        .arg("-serial")
        .arg(format!("file:{}", serial.display()))
        .arg("-kernel")
        .arg(&a.kernel)
        .arg("-initrd")
        .arg(self.extra.initrd.as_ref().unwrap_or(&a.initrd))
        .args(["-append", &append])
        .arg("-drive")
        .arg(format!(
            "file={},format=qcow2,if=virtio",
            self.work.disk().display()
        ));
        for (i, (img, format, serial, ro)) in self.extra.disks.iter().enumerate() {
            // QEMU 10 takes the serial on the device, not on -drive.
            c.arg("-drive")
                .arg(format!(
                    "file={},format={format},if=none,id=xd{i}{}",
                    img.display(),
                    if *ro { ",readonly=on" } else { "" }
                ))
                .arg("-device")
                .arg(format!("virtio-blk-pci,drive=xd{i},serial={serial}"));
        }
        match (self.attach, &self.drive) {
            (Attach::CdRom, Some(iso)) => {
                c.args(["-device", "virtio-scsi-pci,id=scsi0", "-drive"])
                    .arg(format!(
                        "file={},if=none,id=cd0,media=cdrom,readonly=on,format=raw",
                        iso.display()
                    ))
                    .args(["-device", "scsi-cd,drive=cd0,bus=scsi0.0"]);
            }
            (Attach::SecondDisk, Some(iso)) => {
                c.arg("-drive").arg(format!(
                    "file={},format=raw,if=virtio,readonly=on",
                    iso.display()
                ));
            }
            _ => {}
        }
        if let Some((port, _)) = self.ssh {
            c.args([
                "-netdev",
                &format!("user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:{port}-:22"),
            ])
            .args(["-device", "virtio-net-pci,netdev=n0,mac=52:54:00:12:34:56"]);
        }
        for (i, mac) in self.nics.iter().enumerate() {
            // No route out of QEMU (restrict=on): the guest only sees its own addresses.
            c.args(["-netdev", &format!("user,id=net{i},restrict=on")])
                .args([
                    "-device",
                    &format!("virtio-net-pci,netdev=net{i},mac={mac}"),
                ]);
        }
        c.stdout(Stdio::null()).stderr(Stdio::piped());
        (c.spawn().expect("start qemu"), serial)
    }

    pub fn run(&self) -> Report {
        self.run_with(|_| {})
    }

    /// Boots, calls `during` once the guest printed its READY marker (SSH scenario), waits for
    /// the guest to power off (bounded), and parses the report.
    pub fn run_with(&self, during: impl FnOnce(&Path)) -> Report {
        if let (Attach::Partition, Some(iso)) = (self.attach, &self.drive) {
            self.work.write_partition(iso);
        }
        let start = Instant::now();
        let (mut child, serial) = self.spawn();
        let deadline = self.extra.deadline.unwrap_or(Duration::from_secs(240));
        let mut during = Some(during);
        let status = loop {
            if let Some(s) = child.try_wait().expect("wait qemu") {
                break Some(s);
            }
            if self.ssh.is_some()
                && fs::read_to_string(&serial)
                    .unwrap_or_default()
                    .contains("===E2E-READY===")
            {
                if let Some(f) = during.take() {
                    f(&serial);
                }
            }
            if start.elapsed() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        let wall = start.elapsed();
        let log = fs::read_to_string(&serial).unwrap_or_default();
        let tail: String = log
            .lines()
            .rev()
            .take(80)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n");
        let mut stderr = String::new();
        if let Some(mut e) = child.stderr.take() {
            use std::io::Read;
            let _ = e.read_to_string(&mut stderr);
        }
        assert!(
            status.is_some(),
            "[{}] guest did not power off within {deadline:?}; serial log tail:\n{tail}",
            self.work.name
        );
        assert!(
            status.is_some_and(|s| s.success()),
            "[{}] qemu failed: {stderr}\nserial log tail:\n{tail}",
            self.work.name
        );
        let body = log
            .split("===E2E-BEGIN===")
            .nth(1)
            .and_then(|b| b.split("===E2E-END===").next())
            .unwrap_or_else(|| {
                panic!(
                    "[{}] no E2E report in the serial log; tail:\n{tail}",
                    self.work.name
                )
            });
        let kv = body
            .lines()
            .filter_map(|l| l.trim_end_matches('\r').split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Report {
            kv,
            serial: log,
            wall,
        }
    }
}

/// `--mount` (the kernel's reader) and primer's own reader agree on every file of the drive.
pub fn assert_mount_agrees(r: &Report, name: &str, dev: &str) {
    assert_eq!(r.get("mount_device"), dev, "[{name}] {}", r.serial);
    assert_eq!(
        r.get("mount_equal"),
        "yes",
        "[{name}] differences: {:?}",
        r.all("mount_diff")
    );
    let files: usize = r.get("mount_files").trim().parse().unwrap_or(0);
    assert!(
        files >= 7,
        "[{name}] only {files} files read through the mount"
    );
    assert_eq!(
        r.get("mounts_left"),
        "0",
        "[{name}] a mount was left behind"
    );
    println!("[{name}] --mount and the user-space reader agree on all {files} files of {dev}");
}

/// What every boot with a drive must show.
pub fn assert_applied(r: &Report, name: &str, keys: &[&str]) {
    let ctx = || format!("[{name}] journal:\n{}", r.journal());
    assert_eq!(r.get("hostname"), "vm-guest", "{}", ctx());
    assert_eq!(r.get("etc_hostname"), "vm-guest", "{}", ctx());
    assert!(r.get("hosts_line").contains(FQDN), "{}", ctx());
    let root_keys = r.all("root_key");
    for k in keys {
        assert!(
            root_keys.contains(k),
            "key missing from /root/.ssh/authorized_keys: {root_keys:?}\n{}",
            ctx()
        );
    }
    assert_eq!(r.get("local_copy").trim(), INSTANCE, "{}", ctx());
    assert_eq!(r.get("local_copy_modes").trim(), "600 700", "{}", ctx());
    assert_unit_ok(r, name);
    // primer finished before network-pre.target and before sshd started.
    let exit = r.us("primer_exit_us");
    assert!(exit > 0, "{}", ctx());
    assert!(
        exit <= r.us("network_pre_us"),
        "primer ended after network-pre.target\n{}",
        ctx()
    );
    let ssh = r.us("ssh_start_us");
    assert!(
        ssh == 0 || exit <= ssh,
        "primer ended after ssh.service started\n{}",
        ctx()
    );
}

pub fn assert_unit_ok(r: &Report, name: &str) {
    assert_eq!(
        r.get("primer_result"),
        "success",
        "[{name}] journal:\n{}",
        r.journal()
    );
    assert_eq!(r.get("primer_active"), "active", "[{name}]");
    assert!(
        !r.get("failed_units").contains("primer"),
        "[{name}] failed units: {}",
        r.get("failed_units")
    );
}

/// The public host keys a boot printed on the console in cloud-init's block
/// (`-----BEGIN SSH HOST KEY KEYS-----`), as `TYPE BASE64` (comment dropped); empty when the
/// boot printed none (no new keys).
pub fn printed_host_keys(serial: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let mut inside = false;
    for l in serial
        .lines()
        .map(|l| l.trim_matches(|c: char| c == '\r' || c == ' '))
    {
        match l {
            "-----BEGIN SSH HOST KEY KEYS-----" => {
                inside = true;
                keys.clear();
            }
            "-----END SSH HOST KEY KEYS-----" => inside = false,
            _ if inside => {
                let f: Vec<&str> = l.split_whitespace().collect();
                if f.len() >= 2 && (f[0].starts_with("ssh-") || f[0].starts_with("ecdsa-")) {
                    keys.push(format!("{} {}", f[0], f[1]));
                }
            }
            _ => {}
        }
    }
    keys
}

/// `ssh_as` with `StrictHostKeyChecking=yes` against `known_hosts` only: the login succeeds
/// only if the guest's host key is one of those.
pub fn ssh_strict(
    key: &Path,
    port: u16,
    user: &str,
    cmd: &str,
    known_hosts: &Path,
) -> std::process::Output {
    let known = format!("UserKnownHostsFile={}", known_hosts.display());
    ssh_with(
        &[
            "StrictHostKeyChecking=yes",
            &known,
            "GlobalKnownHostsFile=/dev/null",
        ],
        key,
        port,
        user,
        cmd,
    )
}
