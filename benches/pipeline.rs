//! Pipeline benchmark (plain harness, `cargo bench`): per-stage wall time of read (ISO9660 from
//! the sample image), parse, host facts + plan, and a first and a second apply into a scratch
//! root. Then the whole binary: `primer run --source /dev/loopN` on the sample drive attached as
//! a loop device (an image file when not root), into a scratch root, N times: CPU time (user +
//! sys, from getrusage of the children, microsecond resolution), peak RSS and binary size.
//! Network: parsing and rendering all four backends for the 11-NIC `os-glean-liberty` case of
//! the shared fixtures (skipped, with the reason printed, when ../shared/fixtures is absent).
//! Users: the sample drive with a drive password and a configured default user on a Debian-like
//! root (account files, skel, sudoers): first run (user created, SHA-512 crypt hash) and re-run
//! (one crypt verification).

use std::path::Path;
use std::time::{Duration, Instant};

use primer::apply::{apply_plan, RunLock, Target, LOCK_WAIT};
use primer::facts::read_host_facts;
use primer::media::Limits;
use primer::plan::{plan, wanted, Policy};
use primer::probe::image::read_source;
use primer::source::parse_drive;

fn stats(name: &str, mut v: Vec<Duration>) {
    v.sort();
    let median = v[v.len() / 2];
    let p95 = v[v.len() * 95 / 100];
    let mean = v.iter().sum::<Duration>() / v.len() as u32;
    println!(
        "{name:<24} median {:>9.1} us  mean {:>9.1} us  p95 {:>9.1} us  (n={})",
        median.as_secs_f64() * 1e6,
        mean.as_secs_f64() * 1e6,
        p95.as_secs_f64() * 1e6,
        v.len()
    );
}

fn main() {
    let iso = Path::new(env!("CARGO_MANIFEST_DIR")).join("images/sample/config-2.iso");
    let n = 300;
    let limits = Limits::default();
    let policy = Policy::default();
    let (mut read, mut parse, mut planning, mut first, mut second) =
        (vec![], vec![], vec![], vec![], vec![]);
    for _ in 0..n {
        let root = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(root.path().join("etc")).expect("etc");
        std::fs::write(
            root.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\n",
        )
        .expect("passwd");
        let t = Instant::now();
        let drive = read_source(&iso, &limits).expect("read sample drive");
        read.push(t.elapsed());
        let t = Instant::now();
        let (instance, _) = parse_drive(&drive).expect("parse");
        parse.push(t.elapsed());
        // As `primer run`: the run lock before the host facts.
        let lock = RunLock::take(root.path(), LOCK_WAIT).expect("run lock");
        let t = Instant::now();
        let facts = read_host_facts(root.path(), &wanted(&instance, &policy), false);
        let p = plan(&instance, &drive, &facts, &policy);
        planning.push(t.elapsed());
        let target = Target {
            root: root.path().to_path_buf(),
            live: false,
        };
        let t = Instant::now();
        apply_plan(&p, &target, &lock);
        first.push(t.elapsed());
        let t = Instant::now();
        let facts = read_host_facts(root.path(), &wanted(&instance, &policy), false);
        let p = plan(&instance, &drive, &facts, &policy);
        apply_plan(&p, &target, &lock);
        second.push(t.elapsed());
    }
    println!("sample drive: {}", iso.display());
    stats("read iso9660", read);
    stats("parse openstack", parse);
    stats("facts + plan", planning);
    stats("apply (first run)", first);
    stats("facts+plan+apply (rerun)", second);
    users(&iso);
    network_render();
    binary(&iso, 50);
    probe_scaling();
    drive_scaling();
}

/// Parse + name + render for networkd, NetworkManager, ifupdown and netplan, for the 11-NIC
/// glean "liberty" case: wall time per iteration and CPU time (getrusage of this process).
fn network_render() {
    use primer::net::naming::assign_names;
    use primer::net::render::{render, RenderOptions};
    use primer::net::{parse_network, Backend, InputFormat};
    let case = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/os-glean-liberty");
    let input = case.join("drive/openstack/latest/network_info.json");
    let Ok(bytes) = std::fs::read(&input) else {
        println!(
            "network render: skipped ({} not present: ../shared/fixtures is absent)",
            input.display()
        );
        return;
    };
    let host: std::collections::BTreeMap<String, String> =
        std::fs::read(case.join("known_macs.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
    let opts = RenderOptions::default();
    let self_cpu = || {
        use nix::sys::resource::{getrusage, UsageWho};
        let u = getrusage(UsageWho::RUSAGE_SELF).expect("getrusage");
        let tv = |t: nix::sys::time::TimeVal| {
            Duration::new(t.tv_sec() as u64, t.tv_usec() as u32 * 1000)
        };
        tv(u.user_time()) + tv(u.system_time())
    };
    let n = 2000u32;
    let (mut parse, mut rend) = (Vec::new(), Vec::new());
    let mut files = 0;
    let cpu0 = self_cpu();
    for _ in 0..n {
        let t = Instant::now();
        let (c, _) = parse_network(&bytes, InputFormat::NetworkData, "network_info.json")
            .expect("liberty case parses");
        parse.push(t.elapsed());
        let t = Instant::now();
        let names = assign_names(&c, &host);
        files = 0;
        for b in Backend::ALL {
            files += render(b, &c, &names, &opts).files.len();
        }
        rend.push(t.elapsed());
    }
    let cpu = (self_cpu() - cpu0) / n;
    println!("network (os-glean-liberty, 11 NICs, 17 links, {files} files over 4 backends):");
    stats("  parse network_info", parse);
    stats("  name + render 4 backends", rend);
    println!(
        "  CPU per parse + render of all 4 backends: {:.1} us",
        cpu.as_secs_f64() * 1e6
    );
}

/// Stage cost against the size of the drive (issue 10, item 6): an OpenStack tree with N
/// injected files (content paths in upper case, so each goes through the case-insensitive
/// lookup) and 8N SSH keys, for N = 1000, 2000, 4000, 8000 (8,000 files, 64k keys). Read, parse
/// and facts + plan, median of 5; the 2N/N ratio of each stage should stay near 2 (linear).
fn drive_scaling() {
    use base64::Engine;
    let policy = Policy::default();
    let mut rows: Vec<(usize, [Duration; 3])> = Vec::new();
    for n in [1000usize, 2000, 4000, 8000] {
        let t = tempfile::tempdir().expect("tempdir");
        let d = t.path().join("drive");
        std::fs::create_dir_all(d.join("openstack/latest")).expect("dir");
        std::fs::create_dir_all(d.join("openstack/content")).expect("dir");
        let mut files = Vec::new();
        for i in 0..n {
            std::fs::write(
                d.join(format!("openstack/content/{i:04}")),
                format!("{i}\n"),
            )
            .expect("content");
            files.push(serde_json::json!({
                "path": format!("/srv/f/{i:04}"),
                "content_path": format!("/CONTENT/{i:04}"),
            }));
        }
        let mut keys = String::new();
        for i in 0..8 * n {
            let mut blob = Vec::new();
            blob.extend_from_slice(&11u32.to_be_bytes());
            blob.extend_from_slice(b"ssh-ed25519");
            blob.extend_from_slice(&32u32.to_be_bytes());
            let mut k = [0u8; 32];
            k[..8].copy_from_slice(&(i as u64).to_be_bytes());
            blob.extend_from_slice(&k);
            let b = base64::engine::general_purpose::STANDARD.encode(&blob);
            keys.push_str(&format!("ssh-ed25519 {b} k{i}\n"));
        }
        let meta = serde_json::json!({
            "uuid": "scale", "hostname": "scale", "files": files, "public_keys": {"all": keys},
        });
        std::fs::write(
            d.join("openstack/latest/meta_data.json"),
            serde_json::to_vec(&meta).expect("json"),
        )
        .expect("meta");
        let root = t.path().join("root");
        std::fs::create_dir_all(root.join("etc")).expect("etc");
        std::fs::write(root.join("etc/passwd"), "root:x:0:0::/root:/bin/sh\n").expect("passwd");
        let limits = Limits::default();
        let (mut read, mut parse, mut planning) = (vec![], vec![], vec![]);
        for _ in 0..5 {
            let t0 = Instant::now();
            let drive = read_source(&d, &limits).expect("read");
            read.push(t0.elapsed());
            let t0 = Instant::now();
            let (instance, _) = parse_drive(&drive).expect("parse");
            parse.push(t0.elapsed());
            assert_eq!(instance.files.len(), n);
            assert!(instance.files.iter().all(|f| f.content.is_some()));
            assert_eq!(instance.ssh_keys.len(), 8 * n);
            let t0 = Instant::now();
            let facts = read_host_facts(&root, &wanted(&instance, &policy), false);
            let p = plan(&instance, &drive, &facts, &policy);
            planning.push(t0.elapsed());
            assert!(p.steps.len() > 2 * n);
        }
        let m = [median(read), median(parse), median(planning)];
        println!(
            "drive {n:>5} files {:>6} keys  read {:>8.1} ms  parse {:>8.1} ms  facts+plan {:>8.1} ms",
            8 * n,
            m[0].as_secs_f64() * 1e3,
            m[1].as_secs_f64() * 1e3,
            m[2].as_secs_f64() * 1e3
        );
        rows.push((n, m));
    }
    for w in rows.windows(2) {
        let (a, b) = (&w[0], &w[1]);
        let r = |i: usize| b.1[i].as_secs_f64() / a.1[i].as_secs_f64();
        println!(
            "drive {} -> {}: read {:.2}x  parse {:.2}x  facts+plan {:.2}x  (goal <= 2.5x each)",
            a.0,
            b.0,
            r(0),
            r(1),
            r(2)
        );
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Probe cost against the number of devices, most empty and one candidate (a `config-2`
/// ISO9660 volume descriptor), through the real code path (`platform::sysfs::probe`): first on a
/// fake sysfs whose device nodes are regular files, then on real loop devices (as root) with a
/// sysfs mirror holding just them, so other loop devices on the machine do not count.
fn probe_scaling() {
    use primer::platform::sysfs::{probe, ProbeRoots};
    use primer::probe::Rules;
    let mut pvd = vec![0u8; 1 << 20];
    pvd[16 * 2048] = 1;
    pvd[16 * 2048 + 1..16 * 2048 + 6].copy_from_slice(b"CD001");
    pvd[16 * 2048 + 6] = 1;
    pvd[16 * 2048 + 40..16 * 2048 + 72].copy_from_slice(b"config-2                        ");
    let rules = Rules::default();
    let measure = |roots: &ProbeRoots, n: usize| -> Duration {
        median(
            (0..30)
                .map(|_| {
                    let t = Instant::now();
                    let p = probe(roots, &rules);
                    assert_eq!(p.devices.len(), n);
                    assert_eq!(p.candidates.len(), 1);
                    t.elapsed()
                })
                .collect(),
        )
    };
    let mut figures = Vec::new();
    for n in [10usize, 64, 128, 1000] {
        let t = tempfile::tempdir().expect("tempdir");
        let sys = t.path().join("sys/class/block");
        let dev = t.path().join("dev");
        std::fs::create_dir_all(&dev).expect("dev");
        for i in 0..n {
            let name = format!("vd{i:04}");
            std::fs::create_dir_all(sys.join(&name)).expect("sys");
            std::fs::write(sys.join(&name).join("size"), "2048\n").expect("size");
            if i == n / 2 {
                std::fs::write(dev.join(&name), &pvd).expect("node");
            } else {
                let f = std::fs::File::create(dev.join(&name)).expect("node");
                f.set_len(1 << 20).expect("size");
            }
        }
        let roots = ProbeRoots {
            sys: t.path().join("sys"),
            dev,
            root: t.path().to_path_buf(),
        };
        let m = measure(&roots, n);
        figures.push((n, m));
        println!(
            "probe {n:>5} fake devices   median {:>9.1} us  ({:.2} us/device)",
            m.as_secs_f64() * 1e6,
            m.as_secs_f64() * 1e6 / n as f64
        );
    }
    ratio("fake", &figures);
    if nix::unistd::geteuid().is_root() {
        let mut real = Vec::new();
        for n in [64usize, 128] {
            match probe_real_loops(n, &pvd, &measure) {
                Some(m) => {
                    real.push((n, m));
                    println!(
                        "probe {n:>5} loop devices   median {:>9.1} us  ({:.2} us/device)",
                        m.as_secs_f64() * 1e6,
                        m.as_secs_f64() * 1e6 / n as f64
                    );
                }
                None => println!("probe {n:>5} loop devices   could not attach {n} loop devices"),
            }
        }
        ratio("loop", &real);
    } else {
        println!("probe over real loop devices: needs root (skipped)");
    }
}

fn ratio(what: &str, figures: &[(usize, Duration)]) {
    let get = |n| figures.iter().find(|(k, _)| *k == n).map(|(_, d)| *d);
    if let (Some(a), Some(b)) = (get(64), get(128)) {
        println!(
            "probe {what}: 64 -> {:.2} ms (goal <= 5 ms), 128 -> {:.2} ms = {:.2}x the 64 figure (goal <= 2.1x)",
            a.as_secs_f64() * 1e3,
            b.as_secs_f64() * 1e3,
            b.as_secs_f64() / a.as_secs_f64()
        );
    }
}

/// Attaches `n` loop devices (one holding `pvd`, the others 1 MiB of zeros), mirrors their
/// sysfs attributes into a temporary sysfs, measures, detaches. `None` if attaching failed.
fn probe_real_loops(
    n: usize,
    pvd: &[u8],
    measure: &dyn Fn(&primer::platform::ProbeRoots, usize) -> Duration,
) -> Option<Duration> {
    use std::process::Command;
    let t = tempfile::tempdir().expect("tempdir");
    let mut loops = Vec::new();
    let sys = t.path().join("sys/class/block");
    let mut ok = true;
    for i in 0..n {
        let img = t.path().join(format!("img{i}"));
        if i == n / 2 {
            std::fs::write(&img, pvd).expect("img");
        } else {
            std::fs::File::create(&img)
                .and_then(|f| f.set_len(1 << 20))
                .expect("img");
        }
        let o = Command::new("losetup")
            .args(["--find", "--show", "--read-only"])
            .arg(&img)
            .output();
        match o {
            Ok(o) if o.status.success() => {
                let dev = String::from_utf8_lossy(&o.stdout).trim().to_string();
                let name = dev.trim_start_matches("/dev/").to_string();
                let real = Path::new("/sys/class/block").join(&name);
                let fake = sys.join(&name);
                std::fs::create_dir_all(fake.join("loop")).expect("mirror");
                for attr in ["size", "ro", "removable", "loop/backing_file"] {
                    let _ = std::fs::copy(real.join(attr), fake.join(attr));
                }
                loops.push(dev);
            }
            _ => {
                ok = false;
                break;
            }
        }
    }
    let result = ok.then(|| {
        let roots = primer::platform::ProbeRoots {
            sys: t.path().join("sys"),
            dev: "/dev".into(),
            root: t.path().to_path_buf(),
        };
        measure(&roots, n)
    });
    for d in &loops {
        let _ = Command::new("losetup").args(["-d", d]).status();
    }
    result
}

fn children_usage() -> (Duration, i64) {
    use nix::sys::resource::{getrusage, UsageWho};
    let u = getrusage(UsageWho::RUSAGE_CHILDREN).expect("getrusage");
    let tv =
        |t: nix::sys::time::TimeVal| Duration::new(t.tv_sec() as u64, t.tv_usec() as u32 * 1000);
    (tv(u.user_time()) + tv(u.system_time()), u.max_rss())
}

/// Runs the real binary `n` times per case and reports CPU time per run and peak RSS.
fn binary(iso: &Path, n: u32) {
    use std::process::{Command, Stdio};
    let bin = env!("CARGO_BIN_EXE_primer");
    let size = std::fs::metadata(bin).map(|m| m.len()).unwrap_or(0);
    let mut loop_dev = None;
    if nix::unistd::geteuid().is_root() {
        let o = Command::new("losetup")
            .args(["--find", "--show", "--read-only"])
            .arg(iso)
            .output();
        if let Some(o) = o.ok().filter(|o| o.status.success()) {
            loop_dev = Some(String::from_utf8_lossy(&o.stdout).trim().to_string());
        }
    }
    let source = loop_dev
        .clone()
        .unwrap_or_else(|| iso.display().to_string());
    println!("binary: {bin} ({size} bytes), source {source}");
    for rerun in [false, true] {
        let root = tempfile::tempdir().expect("tempdir");
        let fresh = |r: &Path| {
            let _ = std::fs::remove_dir_all(r);
            std::fs::create_dir_all(r.join("etc")).expect("etc");
            std::fs::write(r.join("etc/passwd"), "root:x:0:0::/root:/bin/sh\n").expect("passwd");
        };
        fresh(root.path());
        let mut cpu = Vec::new();
        for _ in 0..n {
            if !rerun {
                fresh(root.path());
            }
            let (before, _) = children_usage();
            let status = Command::new(bin)
                .args(["run", "--log-level", "error", "--source", &source, "--root"])
                .arg(root.path())
                .stdout(Stdio::null())
                .status()
                .expect("run primer");
            let (after, _) = children_usage();
            assert!(
                matches!(status.code(), Some(0) | Some(10)),
                "primer run failed: {status}"
            );
            cpu.push(after - before);
        }
        stats(
            if rerun {
                "binary re-run (cpu)"
            } else {
                "binary first run (cpu)"
            },
            cpu,
        );
    }
    // Peak RSS of primer alone (getrusage of the children would include losetup): GNU time.
    let root = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(root.path().join("etc")).expect("etc");
    std::fs::write(
        root.path().join("etc/passwd"),
        "root:x:0:0::/root:/bin/sh\n",
    )
    .expect("passwd");
    let rss = Command::new("/usr/bin/time")
        .args([
            "-f",
            "%M",
            bin,
            "run",
            "--log-level",
            "error",
            "--source",
            &source,
            "--root",
        ])
        .arg(root.path())
        .stdout(Stdio::null())
        .output();
    match rss {
        Ok(o) => println!(
            "peak RSS (first run, GNU time): {} KiB",
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(e) => println!("peak RSS: /usr/bin/time not available ({e})"),
    }
    if let Some(dev) = loop_dev {
        let _ = Command::new("losetup").args(["-d", &dev]).status();
    }
}

/// First run and re-run with a default user and a drive password.
fn users(iso: &Path) {
    use primer::model::Secret;
    use primer::plan::users::DefaultUser;
    let limits = Limits::default();
    let drive = read_source(iso, &limits).expect("read sample drive");
    let (mut instance, _) = parse_drive(&drive).expect("parse");
    instance.admin_pass = Some(Secret::new(b"bench-password".to_vec()));
    let mut policy = Policy::default();
    policy.users.default_user = Some(DefaultUser {
        name: "debian".into(),
        gecos: Some("Debian".into()),
        groups: vec!["adm".into(), "sudo".into()],
        shell: Some("/bin/bash".into()),
        sudo: Some("ALL=(ALL) NOPASSWD:ALL".into()),
        lock_password: true,
    });
    policy.ssh_user = "debian".into();
    let (mut first, mut second, mut replan) = (vec![], vec![], vec![]);
    for _ in 0..100 {
        let root = tempfile::tempdir().expect("tempdir");
        let r = root.path();
        for (p, c) in [
            ("etc/passwd", "root:x:0:0:root:/root:/bin/bash\n"),
            ("etc/shadow", "root:*:19800:0:99999:7:::\n"),
            ("etc/group", "root:x:0:\nadm:x:4:\nsudo:x:27:\n"),
            ("etc/gshadow", "root:*::\nadm:*::\nsudo:*::\n"),
            ("etc/sudoers", "root ALL=(ALL) ALL\n"),
            ("etc/skel/.profile", "# profile\n"),
            ("etc/skel/.bashrc", "# bashrc\n"),
        ] {
            std::fs::create_dir_all(r.join(p).parent().expect("parent")).expect("dir");
            std::fs::write(r.join(p), c).expect("write");
        }
        let target = Target {
            root: r.to_path_buf(),
            live: false,
        };
        let lock = RunLock::take(r, LOCK_WAIT).expect("run lock");
        for times in [&mut first, &mut second] {
            let t = Instant::now();
            let facts = read_host_facts(r, &wanted(&instance, &policy), false);
            let p = plan(&instance, &drive, &facts, &policy);
            apply_plan(&p, &target, &lock);
            times.push(t.elapsed());
        }
        // Planning alone on a boot after the first: the password step is decided by keyed
        // digests (no SHA-512 crypt), so this bounds the password step's cost.
        let facts = read_host_facts(r, &wanted(&instance, &policy), false);
        let t = Instant::now();
        let p = plan(&instance, &drive, &facts, &policy);
        replan.push(t.elapsed());
        assert!(p
            .steps
            .iter()
            .any(|s| s.id.starts_with("password:") && s.why().contains("no hash computed")));
    }
    println!("users (default user + drive password, Debian-like root):");
    stats("facts+plan+apply (first run)", first);
    stats("facts+plan+apply (rerun)", second);
    stats("plan only, rerun (password step by keyed digest)", replan);
}
