//! Network: golden files per renderer for the project's own cases (`tests/fixtures/network/`),
//! real validators (`netplan generate --root-dir`, `ifquery`) on every rendered netplan and ENI
//! file, a structural check of every PowerShell script (no PowerShell parser is installable
//! here), the planner through the real binary (detection, idempotence, stale files, never tear
//! down), `primer net render`, and conformance over `../shared/fixtures` (os-* and nc-* cases).
//!
//! Golden files: `tests/golden/network/<case>/<backend>/<path>` plus `RENDER.txt` (modes and
//! warnings) and `<case>/model.json`. Regenerate with `PRIMER_UPDATE_GOLDEN=1 cargo test --test
//! network` and review the diff.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{make_drive, primer, require_tool, shared_fixtures, text, DriveFs};
use primer::model::network::{LinkKind, NetworkConfig};
use primer::model::Report;
use primer::net::naming::{assign_names, Names};
use primer::net::render::{render, RenderOptions, Rendered};
use primer::net::{parse_network, Backend, InputFormat};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn cases() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(repo().join("tests/fixtures/network"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    v.sort();
    v
}

/// Loads a project case: its input (network_data.json or network-config) and the target's
/// interfaces (`interfaces.txt`: `MAC NAME` lines).
fn load(case: &Path) -> (NetworkConfig, Report, BTreeMap<String, String>) {
    let (file, fmt) = if case.join("network_data.json").exists() {
        ("network_data.json", InputFormat::NetworkData)
    } else {
        ("network-config", InputFormat::NetworkConfig)
    };
    let bytes = fs::read(case.join(file)).unwrap();
    let (c, r) =
        parse_network(&bytes, fmt, file).unwrap_or_else(|e| panic!("{}: {e}", case.display()));
    let mut ifaces = BTreeMap::new();
    if let Ok(t) = fs::read_to_string(case.join("interfaces.txt")) {
        for l in t.lines() {
            let mut w = l.split_whitespace();
            if let (Some(m), Some(n)) = (w.next(), w.next()) {
                ifaces.insert(m.to_string(), n.to_string());
            }
        }
    }
    (c, r, ifaces)
}

fn opts() -> RenderOptions {
    RenderOptions {
        netplan_renderer: None,
        eni_resolv_conf: true,
    }
}

/// What a render looks like on disk in the golden tree.
fn golden_tree(r: &Rendered) -> BTreeMap<String, String> {
    let mut t = BTreeMap::new();
    let mut summary = String::new();
    for f in &r.files {
        t.insert(f.path.clone(), f.content.to_string());
        summary.push_str(&format!("mode {:04o} {}\n", f.mode, f.path));
    }
    for w in &r.warnings {
        summary.push_str(&format!("warning: {w}\n"));
    }
    t.insert("RENDER.txt".into(), summary);
    t
}

fn read_tree(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
                out.insert(rel, fs::read_to_string(&p).unwrap());
            }
        }
    }
    out
}

fn check_golden(dir: &Path, actual: &BTreeMap<String, String>) -> Vec<String> {
    if std::env::var_os("PRIMER_UPDATE_GOLDEN").is_some() {
        let _ = fs::remove_dir_all(dir);
        for (p, c) in actual {
            let f = dir.join(p);
            fs::create_dir_all(f.parent().unwrap()).unwrap();
            fs::write(f, c).unwrap();
        }
        return Vec::new();
    }
    let expected = read_tree(dir);
    let mut diffs = Vec::new();
    for (p, c) in actual {
        match expected.get(p) {
            Some(e) if e == c => {}
            Some(e) => diffs.push(format!(
                "{}/{p} differs:\n--- expected\n{e}\n--- actual\n{c}",
                dir.display()
            )),
            None => diffs.push(format!("{}/{p} is new:\n{c}", dir.display())),
        }
    }
    for p in expected.keys().filter(|p| !actual.contains_key(*p)) {
        diffs.push(format!("{}/{p} is no longer rendered", dir.display()));
    }
    diffs
}

#[test]
fn golden_files_for_every_case_and_backend() {
    let mut diffs = Vec::new();
    for case in cases() {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let (c, report, ifaces) = load(&case);
        let names = assign_names(&c, &ifaces);
        let golden = repo().join("tests/golden/network").join(&name);
        let model = serde_json::to_string_pretty(&serde_json::json!({
            "model": c,
            "warnings": report.warnings,
        }))
        .unwrap()
            + "\n";
        let mut m = BTreeMap::new();
        m.insert("model.json".to_string(), model);
        for d in check_golden(&golden.join("model"), &m) {
            diffs.push(d);
        }
        for b in Backend::ALL {
            let r = render(b, &c, &names, &opts());
            // Deterministic: a second render is identical.
            assert_eq!(r, render(b, &c, &names, &opts()), "{name}/{b}");
            for f in &r.files {
                assert!(
                    f.content.starts_with(primer::net::render::HEADER),
                    "{name}/{b}: {} has no header",
                    f.path
                );
            }
            diffs.extend(check_golden(&golden.join(b.as_str()), &golden_tree(&r)));
        }
    }
    assert!(
        diffs.is_empty(),
        "{}\n(regenerate with PRIMER_UPDATE_GOLDEN=1 and review)",
        diffs.join("\n")
    );
}

/// The addresses and routes the model asks for, on links that carry layer 3, as text.
fn wanted(c: &NetworkConfig) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut a = BTreeSet::new();
    let mut r = BTreeSet::new();
    for l in &c.links {
        if c.controller_of(&l.id).is_some() {
            continue;
        }
        for x in &l.l3.addresses {
            a.insert(x.to_string());
        }
        for x in &l.l3.routes {
            r.insert(format!(
                "{} via {}",
                x.to,
                x.via.map(|v| v.to_string()).unwrap_or_default()
            ));
        }
    }
    (a, r)
}

/// `netplan generate --root-dir` accepts the file and generates networkd configuration with
/// exactly the model's addresses and routes.
fn netplan_validate(label: &str, c: &NetworkConfig, names: &Names) {
    require_tool("netplan");
    let r = render(Backend::Netplan, c, names, &opts());
    let root = tempfile::tempdir().unwrap();
    for f in &r.files {
        let p = root.path().join(&f.path);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, &f.content).unwrap();
        fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(f.mode)).unwrap();
    }
    let o = Command::new("netplan")
        .args(["generate", "--root-dir"])
        .arg(root.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.success() && !err.contains("Error") && !err.contains("WARNING"),
        "{label}: netplan generate refused:\n{}\n{}",
        text(&o),
        r.files[0].content
    );
    let gen = root.path().join("run/systemd/network");
    let mut addrs = BTreeSet::new();
    let mut routes = BTreeSet::new();
    for (_, content) in read_tree(&gen) {
        let mut dest = None;
        let mut gw = None;
        let flush =
            |dest: &mut Option<String>, gw: &mut Option<String>, routes: &mut BTreeSet<String>| {
                if let Some(d) = dest.take() {
                    routes.insert(format!("{d} via {}", gw.take().unwrap_or_default()));
                }
                *gw = None;
            };
        for line in content.lines() {
            if line.starts_with('[') {
                flush(&mut dest, &mut gw, &mut routes);
            }
            if let Some(a) = line.strip_prefix("Address=") {
                addrs.insert(a.to_string());
            } else if let Some(d) = line.strip_prefix("Destination=") {
                dest = Some(d.to_string());
            } else if let Some(g) = line.strip_prefix("Gateway=") {
                gw = Some(g.to_string());
            }
        }
        flush(&mut dest, &mut gw, &mut routes);
    }
    let (wa, wr) = wanted(c);
    assert_eq!(addrs, wa, "{label}: addresses netplan generated");
    assert_eq!(routes, wr, "{label}: routes netplan generated");
}

/// `ifquery` parses the ENI file; every interface it lists is queried, and every static
/// address of a named link appears.
fn ifquery_validate(label: &str, c: &NetworkConfig, names: &Names) {
    require_tool("ifquery");
    let r = render(Backend::Eni, c, names, &opts());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("interfaces");
    fs::write(&file, &r.files[0].content).unwrap();
    let o = Command::new("ifquery")
        .arg("-i")
        .arg(&file)
        .args(["--list", "--allow=auto"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{label}: ifquery --list: {}", text(&o));
    let listed: Vec<String> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    let mut all = String::new();
    for iface in &listed {
        let o = Command::new("ifquery")
            .arg("-i")
            .arg(&file)
            .arg(iface)
            .output()
            .unwrap();
        assert!(
            o.status.success() && o.stderr.is_empty(),
            "{label}: ifquery {iface}: {}\n{}",
            text(&o),
            r.files[0].content
        );
        all.push_str(&String::from_utf8_lossy(&o.stdout));
    }
    for l in &c.links {
        if c.controller_of(&l.id).is_some() {
            continue;
        }
        // A NIC not on the target (unnamed, or to be renamed) is mapped by its MAC to a
        // logical stanza: queried as `PHYS=LOGICAL`, with its addresses.
        let absent = names.name(&l.id).is_none() || names.missing_macs.contains(&l.id);
        if let (LinkKind::Physical, Some(mac), true) = (&l.kind, &l.mac, absent) {
            let logical = primer::net::render::eni::logical_name(mac);
            assert!(
                r.files[0]
                    .content
                    .contains(&format!("auto mac/{mac}/={logical}\n")),
                "{label}: {mac} not mapped:\n{}",
                r.files[0].content
            );
            let o = Command::new("ifquery")
                .arg("-i")
                .arg(&file)
                .arg(format!("x={logical}"))
                .output()
                .unwrap();
            assert!(
                o.status.success() && o.stderr.is_empty(),
                "{label}: {}",
                text(&o)
            );
            let q = String::from_utf8_lossy(&o.stdout);
            for a in l.l3.addresses.iter().filter(|a| a.addr().is_ipv4()).take(1) {
                assert!(
                    q.contains(&format!("address: {}\n", a.addr())),
                    "{label}: {logical}: address {a} missing:\n{q}"
                );
            }
            continue;
        }
        let Some(n) = names.name(&l.id) else { continue };
        if let LinkKind::Vlan { parent, .. } = &l.kind {
            if names.name(parent).is_none() {
                continue;
            }
        }
        assert!(
            listed.contains(&n.to_string()),
            "{label}: {n} not listed: {listed:?}"
        );
        for a in &l.l3.addresses {
            assert!(
                all.contains(&format!("address: {}\n", a.addr())),
                "{label}: {n}: address {a} missing from ifquery:\n{all}"
            );
        }
    }
}

#[test]
fn netplan_generate_accepts_every_case() {
    for case in cases() {
        let (c, _, ifaces) = load(&case);
        let names = assign_names(&c, &ifaces);
        netplan_validate(&case.display().to_string(), &c, &names);
    }
}

#[test]
fn ifquery_parses_every_case() {
    for case in cases() {
        let (c, _, ifaces) = load(&case);
        let names = assign_names(&c, &ifaces);
        ifquery_validate(&case.display().to_string(), &c, &names);
    }
}

#[test]
fn model_facts_the_issue_names() {
    use primer::model::network::{BondMode, Ipv6Auto};
    let case = |n: &str| load(&repo().join("tests/fixtures/network").join(n)).0;
    let c = case("dhcp4-slaac");
    assert!(c.links[0].l3.dhcp4);
    assert_eq!(c.links[0].l3.ipv6, Ipv6Auto::Slaac, "SLAAC is not DHCPv6");
    assert!(c.links[0].l3.addresses.is_empty());
    let c = case("dhcpv6-stateful-stateless");
    assert_eq!(c.links[0].l3.ipv6, Ipv6Auto::DhcpStateful);
    assert_eq!(c.links[1].l3.ipv6, Ipv6Auto::DhcpStateless);
    let c = case("bond-lacp-vlan");
    match &c.link("bond0").unwrap().kind {
        LinkKind::Bond { members, params } => {
            assert_eq!(members.len(), 2);
            assert_eq!(params.mode, BondMode::Lacp);
            assert_eq!(params.lacp_rate.as_deref(), Some("fast"));
        }
        k => panic!("{k:?}"),
    }
    assert_eq!(c.link("vlan0").unwrap().l3.routes.len(), 2);
    let c = case("ipv6-prefix-in-address");
    assert_eq!(
        c.links[0].l3.addresses[0].to_string(),
        "2001:cdba::3257:9652/64"
    );
    let c = case("cloudstack-shared-ids");
    assert_eq!(
        c.links[0].l3.addresses.len(),
        2,
        "both networks with id eth0 kept"
    );
    assert!(c.links[0].l3.routes.iter().all(|r| r.is_default()));
    let c = case("mtu");
    let mtus: Vec<Option<u32>> = c.links.iter().map(|l| l.mtu).collect();
    assert_eq!(mtus, [Some(9000), Some(1400), None]);
    let c = case("static-v4-v6");
    assert_eq!(c.links[0].l3.dns.nameservers.len(), 1, "per-network DNS");
    assert_eq!(c.dns.nameservers.len(), 2, "top-level DNS");
    assert_eq!(c.links[0].l3.routes[1].metric, Some(50));
    // Issue 11 item 4: the backup IPv6 default (no metric on the drive) must not beat the
    // primary through the kernel's 1024: every default gets an explicit metric per family,
    // in drive order.
    // Issue 11 item 3: every bond option reaches the typed model, or a warning names it.
    let (c, r, _) = load(&repo().join("tests/fixtures/network/bond-options"));
    let LinkKind::Bond { params, .. } = &c.link("bond0").unwrap().kind else {
        panic!()
    };
    use primer::model::network::BondValue;
    assert_eq!(params.primary.as_deref(), Some("port-a"));
    assert_eq!(params.option("updelay"), Some(&BondValue::Num(200)));
    assert_eq!(params.option("downdelay"), Some(&BondValue::Num(200)));
    assert_eq!(
        params.option("ad_select"),
        Some(&BondValue::Word("bandwidth"))
    );
    assert_eq!(params.option("num_grat_arp"), Some(&BondValue::Num(3)));
    assert_eq!(params.option("use_carrier"), Some(&BondValue::Bool(true)));
    assert!(r
        .warnings
        .iter()
        .any(|w| w.field.ends_with("bond_flux_capacitor")
            && w.message.contains("unknown bond option")));
    let (c, r, _) = load(&repo().join("tests/fixtures/network/bond-arp-options"));
    let LinkKind::Bond { params, .. } = &c.link("bond1").unwrap().kind else {
        panic!()
    };
    assert_eq!(
        params.option("arp_ip_target"),
        Some(&BondValue::Ips(vec![
            "10.20.0.1".parse().unwrap(),
            "10.20.0.2".parse().unwrap()
        ]))
    );
    assert_eq!(
        params.option("ad_actor_system"),
        Some(&BondValue::Mac("02:00:00:00:00:01".into()))
    );
    assert_eq!(params.option("updelay"), None, "\"fast\" is no time");
    assert!(r.warnings.iter().any(|w| w.field.ends_with("bond_updelay")));
    let names = assign_names(&c, &Default::default());
    let nd = render(Backend::Netplan, &c, &names, &opts());
    assert!(
        nd.warnings
            .iter()
            .any(|w| w.contains("ad_actor_system") && w.contains("netplan")),
        "{nd:?}"
    );
    let c = case("two-ipv6-defaults");
    let defaults: Vec<(bool, Option<u32>)> = c
        .links
        .iter()
        .flat_map(|l| l.l3.routes.iter())
        .filter(|r| r.is_default())
        .map(|r| (r.to.addr().is_ipv6(), r.metric))
        .collect();
    assert_eq!(
        defaults,
        [(false, Some(100)), (true, Some(100)), (true, Some(200))]
    );
}

// ---- the planner through the real binary ----

fn write_drive(dir: &Path, network_data: Option<&str>) {
    let meta = serde_json::json!({"uuid": "net-test-0001", "hostname": "net-test"});
    for v in ["latest", "2018-08-27"] {
        let d = dir.join("openstack").join(v);
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join("meta_data.json"), meta.to_string()).unwrap();
        let nd = d.join("network_data.json");
        match network_data {
            Some(n) => fs::write(nd, n).unwrap(),
            None => {
                let _ = fs::remove_file(nd);
            }
        }
    }
}

fn target_with_networkd() -> tempfile::TempDir {
    let root = common::scratch_root();
    let wants = root
        .path()
        .join("etc/systemd/system/multi-user.target.wants");
    fs::create_dir_all(&wants).unwrap();
    std::os::unix::fs::symlink(
        "/lib/systemd/system/systemd-networkd.service",
        wants.join("systemd-networkd.service"),
    )
    .unwrap();
    // The target's NIC (a fake sysfs entry) names the link for ifupdown.
    let n = root.path().join("sys/class/net/ens3");
    fs::create_dir_all(&n).unwrap();
    fs::write(n.join("address"), "52:54:00:aa:00:01\n").unwrap();
    root
}

fn run(drive: &Path, root: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "run",
        "--source",
        drive.to_str().unwrap(),
        "--root",
        root.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    primer(&args)
}

fn files_under(root: &Path, dir: &str) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(root.join(dir))
        .map(|r| {
            r.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn run_detects_networkd_writes_once_removes_stale_never_tears_down() {
    let nd =
        fs::read_to_string(repo().join("tests/fixtures/network/static-v4-v6/network_data.json"))
            .unwrap();
    let drive = tempfile::tempdir().unwrap();
    write_drive(drive.path(), Some(&nd));
    let root = target_with_networkd();
    let o = run(drive.path(), root.path(), &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        text(&o).contains("systemd-networkd is enabled"),
        "{}",
        text(&o)
    );
    let net = files_under(root.path(), "etc/systemd/network");
    assert_eq!(net, ["10-primer-tap0.network"], "{}", text(&o));
    let content = fs::read_to_string(
        root.path()
            .join("etc/systemd/network/10-primer-tap0.network"),
    )
    .unwrap();
    assert!(
        content.contains("Address=192.0.2.10/24") && content.contains("Address=2001:db8:10::10/64")
    );

    // Same drive again: nothing changes.
    let before = common::snapshot(root.path());
    let o = run(drive.path(), root.path(), &[]);
    assert_eq!(o.status.code(), Some(10), "{}", text(&o));
    assert_eq!(before, common::snapshot(root.path()));

    // A user's own file in the same directory is never touched.
    fs::write(
        root.path()
            .join("etc/systemd/network/10-primer-mine.network"),
        "[Match]\n",
    )
    .unwrap();
    // The drive's network changes: a second NIC appears, the first is renamed in the data.
    let nd2 = nd.replace("\"tap0\"", "\"tapX\"");
    write_drive(drive.path(), Some(&nd2));
    let o = run(drive.path(), root.path(), &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(
        files_under(root.path(), "etc/systemd/network"),
        ["10-primer-mine.network", "10-primer-tapX.network"],
        "stale primer file removed, user file kept: {}",
        text(&o)
    );

    // A drive without network data, then an empty `{}`: existing network files stay.
    for nd in [None, Some("{}")] {
        write_drive(drive.path(), nd);
        let o = run(drive.path(), root.path(), &[]);
        assert!(
            matches!(o.status.code(), Some(0) | Some(10)),
            "{}",
            text(&o)
        );
        assert_eq!(
            files_under(root.path(), "etc/systemd/network"),
            ["10-primer-mine.network", "10-primer-tapX.network"],
            "{}",
            text(&o)
        );
    }
}

#[test]
fn run_with_each_backend_flag() {
    let nd =
        fs::read_to_string(repo().join("tests/fixtures/network/static-v4-v6/network_data.json"))
            .unwrap();
    let drive = tempfile::tempdir().unwrap();
    write_drive(drive.path(), Some(&nd));
    for (b, path, mode) in [
        (
            "networkd",
            "etc/systemd/network/10-primer-tap0.network",
            0o644,
        ),
        (
            "networkmanager",
            "etc/NetworkManager/system-connections/primer-tap0.nmconnection",
            0o600,
        ),
        ("eni", "etc/network/interfaces.d/primer", 0o644),
        ("netplan", "etc/netplan/50-primer.yaml", 0o600),
    ] {
        let root = target_with_networkd();
        let o = run(drive.path(), root.path(), &["--network-backend", b]);
        assert_eq!(o.status.code(), Some(0), "{b}: {}", text(&o));
        assert_eq!(
            common::mode(&root.path().join(path)),
            mode,
            "{b}: {}",
            text(&o)
        );
        if b == "eni" {
            let i = fs::read_to_string(root.path().join("etc/network/interfaces")).unwrap();
            assert!(i.contains("source /etc/network/interfaces.d/*"), "{i}");
            let r = fs::read_to_string(root.path().join("etc/resolv.conf")).unwrap();
            assert!(
                r.contains("nameserver 2001:db8:10::53") || r.contains("nameserver 192.0.2.53"),
                "{r}"
            );
            let e = fs::read_to_string(root.path().join(path)).unwrap();
            assert!(
                e.contains("iface ens3 inet static"),
                "named from sysfs: {e}"
            );
        }
        let o = run(drive.path(), root.path(), &["--network-backend", b]);
        assert_eq!(o.status.code(), Some(10), "{b}: {}", text(&o));
    }
}

#[test]
fn broken_network_data_fails_only_the_network_step() {
    let drive = tempfile::tempdir().unwrap();
    write_drive(
        drive.path(),
        Some(r#"{"links":[],"networks":[{"id":"net9","link":"tapGone","type":"ipv4_dhcp"}]}"#),
    );
    let root = target_with_networkd();
    let o = run(drive.path(), root.path(), &[]);
    assert_eq!(o.status.code(), Some(3), "partial: {}", text(&o));
    assert!(
        text(&o).contains("net9") && text(&o).contains("tapGone"),
        "{}",
        text(&o)
    );
    assert_eq!(
        fs::read_to_string(root.path().join("etc/hostname")).unwrap(),
        "net-test\n"
    );
}

#[test]
fn net_render_cli_prints_files_with_their_paths() {
    let input = repo().join("tests/fixtures/network/v2-bond-vlan-bridge/network-config");
    for b in ["networkd", "networkmanager", "eni", "netplan"] {
        let o = primer(&[
            "net",
            "render",
            "--backend",
            b,
            "--input",
            input.to_str().unwrap(),
            "--root",
            "/nonexistent",
        ]);
        assert!(o.status.success(), "{b}: {}", text(&o));
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(out.starts_with("# file: /etc/"), "{b}: {out}");
        assert!(out.contains("# managed by primer"), "{b}");
    }
    // The netplan output as a whole is one valid netplan file.
    let o = primer(&[
        "net",
        "render",
        "--backend",
        "netplan",
        "--input",
        input.to_str().unwrap(),
    ]);
    let root = tempfile::tempdir().unwrap();
    fs::create_dir_all(root.path().join("etc/netplan")).unwrap();
    let f = root.path().join("etc/netplan/50-primer.yaml");
    fs::write(&f, &o.stdout).unwrap();
    fs::set_permissions(&f, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let g = Command::new("netplan")
        .args(["generate", "--root-dir"])
        .arg(root.path())
        .output()
        .unwrap();
    assert!(g.status.success(), "{}", text(&g));
    // --json: the same files as data.
    let o = primer(&[
        "net",
        "render",
        "--backend",
        "eni",
        "--json",
        "--input",
        input.to_str().unwrap(),
    ]);
    let v = common::json(&o);
    assert_eq!(
        v["files"][0]["path"],
        "/etc/network/interfaces.d/primer",
        "{}",
        text(&o)
    );
    // A drive directory as --source works too.
    let drive = tempfile::tempdir().unwrap();
    write_drive(
        drive.path(),
        Some(
            &fs::read_to_string(
                repo().join("tests/fixtures/network/bond-lacp-vlan/network_data.json"),
            )
            .unwrap(),
        ),
    );
    let o = primer(&[
        "net",
        "render",
        "--backend",
        "networkd",
        "--source",
        drive.path().to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("Kind=bond"));
}

// ---- conformance over the shared real-world fixtures ----

/// The network input of a shared case, if it has one.
fn shared_input(case: &Path) -> Option<(PathBuf, InputFormat)> {
    let os = case.join("drive/openstack/latest");
    for n in ["network_data.json", "network_info.json"] {
        if os.join(n).exists() {
            return Some((os.join(n), InputFormat::NetworkData));
        }
    }
    let nc = case.join("seed/network-config");
    nc.exists().then_some((nc, InputFormat::NetworkConfig))
}

#[test]
fn conformance_every_shared_case_converts_and_renders() {
    let Some(dir) = shared_fixtures() else {
        println!("SKIP network conformance: ../shared/fixtures not present beside the checkout");
        return;
    };
    let mut cases: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy().into_owned();
            n.starts_with("os-") || n.starts_with("nc-")
        })
        .collect();
    cases.sort();
    let mut with_network = 0;
    for case in &cases {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let Some((input, fmt)) = shared_input(case) else {
            println!("{name}: no network input");
            continue;
        };
        with_network += 1;
        let bytes = fs::read(&input).unwrap();
        let label = input.file_name().unwrap().to_string_lossy().into_owned();
        let (c, report) = parse_network(&bytes, fmt, &label)
            .unwrap_or_else(|e| panic!("{name}: does not convert: {e}"));
        for w in &report.warnings {
            assert!(!w.file.is_empty() && !w.field.is_empty(), "{name}: {w}");
        }
        let ifaces: BTreeMap<String, String> = fs::read(case.join("known_macs.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let names = assign_names(&c, &ifaces);
        let mut files = 0;
        for b in Backend::ALL {
            let r = render(b, &c, &names, &opts());
            assert!(
                !r.files.is_empty() || c.is_empty(),
                "{name}/{b}: nothing rendered"
            );
            files += r.files.len();
        }
        if !c.is_empty() {
            netplan_validate(&name, &c, &names);
            ifquery_validate(&name, &c, &names);
        }
        println!(
            "{name}: {} link(s), {} warning(s), {files} file(s) over 4 backends, netplan generate + ifquery ok",
            c.links.len(),
            report.warnings.len()
        );
    }
    println!(
        "{} cases, {with_network} with network input, all converted and rendered",
        cases.len()
    );
    assert!(with_network >= 15, "expected the os-*/nc-* network cases");
}

/// Issue 11 item 2: the NoCloud seed of the report (a v2 `match: {name: "eth*"}`), with a
/// `driver:` match and a MAC + name match that must both hold. A real seed ISO (primer's
/// make-drive, volume `cidata`), run by the real binary for each backend against a target whose
/// NICs (fake sysfs, drivers as `device/driver` links) are eth0, eth1 (virtio_net), ens5
/// (ixgbe) and ens9 (the MAC of the pinned entry, but not its name). networkd and netplan carry the
/// match rules; NetworkManager and ifupdown get every matching NIC, in name order.
const GLOB_SEED: &str = r#"version: 2
ethernets:
  lan:
    match: {name: "eth*"}
    dhcp4: true
  fast:
    match: {driver: ixgbe}
    addresses: [192.0.2.10/24]
    gateway4: 192.0.2.1
  pinned:
    match: {macaddress: "52:54:00:00:00:09", name: enp9}
    dhcp4: true
"#;

fn glob_seed_iso(dir: &Path) -> PathBuf {
    let tree = dir.join("seed");
    fs::create_dir_all(&tree).unwrap();
    fs::write(
        tree.join("meta-data"),
        "instance-id: glob-0001\nlocal-hostname: glob\n",
    )
    .unwrap();
    fs::write(tree.join("user-data"), "#cloud-config\n").unwrap();
    fs::write(tree.join("network-config"), GLOB_SEED).unwrap();
    // The test needs *a* seed: primer's make-drive builds it (genisoimage's seeds are proven
    // against the reader in tests/formats.rs and tests/discovery.rs).
    let iso = dir.join("seed.iso");
    make_drive(&tree, &iso, DriveFs::Iso9660, "cidata");
    iso
}

/// A fake NIC under `<root>/sys/class/net`, with its driver link when given.
fn fake_nic(root: &Path, name: &str, mac: &str, driver: Option<&str>) {
    let n = root.join("sys/class/net").join(name);
    fs::create_dir_all(n.join("device")).unwrap();
    fs::write(n.join("address"), format!("{mac}\n")).unwrap();
    if let Some(d) = driver {
        std::os::unix::fs::symlink(
            format!("../../../bus/pci/drivers/{d}"),
            n.join("device/driver"),
        )
        .unwrap();
    }
}

#[test]
fn v2_glob_and_driver_matches_from_a_nocloud_seed() {
    let t = tempfile::tempdir().unwrap();
    let iso = glob_seed_iso(t.path());
    let golden = repo().join("tests/golden/network/nocloud-eth-glob");
    let mut diffs = Vec::new();
    for b in Backend::ALL {
        let root = common::scratch_root();
        fake_nic(root.path(), "eth0", "52:54:00:00:00:01", Some("virtio_net"));
        fake_nic(root.path(), "eth1", "52:54:00:00:00:02", Some("virtio_net"));
        fake_nic(root.path(), "ens5", "52:54:00:00:00:05", Some("ixgbe"));
        fake_nic(root.path(), "ens9", "52:54:00:00:00:09", None);
        let o = run(&iso, root.path(), &["--network-backend", b.as_str()]);
        assert_eq!(o.status.code(), Some(0), "{b}: {}", text(&o));
        let out = text(&o);
        let dir = primer::net::render::owned(b).dir;
        let mut tree = BTreeMap::new();
        for (p, c) in read_tree(&root.path().join(dir)) {
            tree.insert(format!("{dir}/{p}"), c);
        }
        let all: String = tree.values().cloned().collect();
        match b {
            Backend::Networkd => {
                // One .network per entry, each with the entry's rules ANDed in [Match].
                assert!(all.contains("[Match]\nName=eth*\n"), "{all}");
                assert!(all.contains("[Match]\nDriver=ixgbe\n"), "{all}");
                assert!(
                    all.contains("[Match]\nPermanentMACAddress=52:54:00:00:00:09\nName=enp9\n"),
                    "{all}"
                );
            }
            Backend::Netplan => {
                assert!(all.contains("name: \"eth*\""), "{all}");
                netplan_generate_root(root.path(), &["Name=eth*", "Driver=ixgbe"]);
            }
            Backend::NetworkManager => {
                let files: Vec<&String> = tree
                    .keys()
                    .filter(|p| p.ends_with(".nmconnection"))
                    .collect();
                assert_eq!(files.len(), 3, "eth0, eth1, ens5: {files:?}");
                for mac in [
                    "52:54:00:00:00:01",
                    "52:54:00:00:00:02",
                    "52:54:00:00:00:05",
                ] {
                    assert!(
                        all.contains(&format!("mac-address={}", mac.to_uppercase())),
                        "{mac}: {all}"
                    );
                }
                assert!(
                    !all.contains("52:54:00:00:00:09")
                        && !all.to_lowercase().contains("52:54:00:00:00:09"),
                    "{all}"
                );
                assert!(
                    out.contains("\"pinned\"") && out.contains("matches no interface"),
                    "{out}"
                );
            }
            Backend::PowerShell => {
                // Windows finds adapters by MAC only: the pinned entry (MAC and name match)
                // is rendered by its MAC, its name match warned as unchecked (a match, not a
                // rename); the glob and driver entries are warned and left out.
                assert!(
                    all.contains("Get-PrimerAdapter '52-54-00-00-00-09'"),
                    "{all}"
                );
                assert!(!all.contains("Rename-PrimerAdapter $a"), "{all}");
                assert!(!all.contains("52-54-00-00-00-01"), "{all}");
                assert!(
                    out.contains("\"lan\"") && out.contains("finds adapters by MAC only"),
                    "{out}"
                );
                assert!(
                    out.contains("\"pinned\"") && out.contains("match is not checked"),
                    "{out}"
                );
                powershell_lint("nocloud-eth-glob", tree.values().next().unwrap());
            }
            Backend::Eni => {
                let f = root.path().join(primer::net::render::eni::PATH);
                let listed = ifquery_list(&f);
                // v2 entries in key order (fast, lan, pinned); each match in name order.
                assert_eq!(listed, ["ens5", "eth0", "eth1"], "{all}");
                let q = ifquery(&f, "ens5");
                assert!(q.contains("address: 192.0.2.10\n"), "{q}");
                assert!(
                    ifquery(&f, "eth1")
                        .contains("up: sysctl -q -e -w net.ipv6.conf.eth1.accept_ra=0"),
                    "{all}"
                );
                assert!(
                    out.contains("\"pinned\"") && out.contains("matches no interface"),
                    "{out}"
                );
            }
        }
        diffs.extend(check_golden(&golden.join(b.as_str()), &tree));
    }
    assert!(
        diffs.is_empty(),
        "{}\n(regenerate with PRIMER_UPDATE_GOLDEN=1 and review)",
        diffs.join("\n")
    );
}

/// The cmdlets a generated script may call (modules NetAdapter, NetTCPIP, DnsClient, NetLbfo
/// and Microsoft.PowerShell.*, all in Windows Server 2016 and later) besides its own helpers.
const PS_CMDLETS: &[&str] = &[
    "Get-NetAdapter",
    "Rename-NetAdapter",
    "Set-NetAdapter",
    "Get-NetIPInterface",
    "Set-NetIPInterface",
    "Get-NetIPAddress",
    "New-NetIPAddress",
    "Remove-NetIPAddress",
    "Get-NetRoute",
    "New-NetRoute",
    "Remove-NetRoute",
    "Get-DnsClient",
    "Set-DnsClient",
    "Set-DnsClientServerAddress",
    "Set-DnsClientGlobalSetting",
    "Get-NetLbfoTeam",
    "New-NetLbfoTeam",
    "Set-NetLbfoTeam",
    "Get-NetLbfoTeamMember",
    "Add-NetLbfoTeamMember",
    "Set-NetLbfoTeamMember",
    "Get-NetLbfoTeamNic",
    "Add-NetLbfoTeamNic",
    "Where-Object",
    "ForEach-Object",
    "Out-Null",
    "Start-Sleep",
    "Set-StrictMode",
];

/// A structural check of a generated PowerShell script, for want of a PowerShell parser on
/// Debian (no `pwsh` package; see `windows/README.md`): every line one of primer's
/// (`check_lines`), brackets balanced outside literals and comments, every `Verb-Noun` word a
/// known cmdlet or a helper the script defines before using it, top-level statements only the
/// preamble, function definitions, `Invoke-PrimerStep 'label' {` blocks and the final `exit 0`.
fn powershell_lint(label: &str, script: &str) {
    assert_eq!(
        primer::net::render::check_lines(primer::net::render::powershell::PATH, script),
        Ok(()),
        "{label}"
    );
    let mut depth: Vec<char> = Vec::new();
    let mut defined: Vec<String> = Vec::new();
    for (n, line) in script.lines().enumerate() {
        let at = format!("{label}: line {}: {line}", n + 1);
        // Code outside literals and comments.
        let mut code = String::new();
        let mut lit = false;
        let mut chars = line.chars().peekable();
        while let Some(c) = chars.next() {
            match (lit, c) {
                (false, '#') => break,
                (false, '\'') => {
                    lit = true;
                    code.push_str("'L");
                }
                (true, '\'') if chars.peek() == Some(&'\'') => {
                    chars.next();
                }
                (true, '\'') => {
                    lit = false;
                    code.push('\'');
                }
                (true, _) => {}
                (false, c) => code.push(c),
            }
        }
        assert!(!lit, "{at}: literal not closed");
        if depth.is_empty() && !code.trim().is_empty() {
            let top = code.trim();
            assert!(
                top.starts_with("$ErrorActionPreference = ")
                    || top.starts_with("$ProgressPreference = ")
                    || top.starts_with("Set-StrictMode ")
                    || top.starts_with("function ")
                    || top.starts_with("Invoke-PrimerStep 'L' {")
                    || top == "exit 0",
                "{at}: not a top-level statement primer writes"
            );
        }
        if let Some(f) = code.trim().strip_prefix("function ") {
            defined.push(f.split('(').next().unwrap().to_string());
        }
        for c in code.chars() {
            match c {
                '(' | '{' | '[' => depth.push(c),
                ')' | '}' | ']' => {
                    let open = depth
                        .pop()
                        .unwrap_or_else(|| panic!("{at}: unbalanced {c}"));
                    assert_eq!(
                        open,
                        match c {
                            ')' => '(',
                            '}' => '{',
                            _ => '[',
                        },
                        "{at}"
                    );
                }
                _ => {}
            }
        }
        for w in code.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-')) {
            let Some((verb, noun)) = w.split_once('-') else {
                continue;
            };
            if verb.is_empty()
                || noun.is_empty()
                || !verb.starts_with(|c: char| c.is_ascii_uppercase())
                || !noun.starts_with(|c: char| c.is_ascii_uppercase())
            {
                continue;
            }
            assert!(
                PS_CMDLETS.contains(&w) || defined.iter().any(|d| d == w),
                "{at}: {w} is neither a known cmdlet nor a helper defined above"
            );
        }
    }
    assert!(depth.is_empty(), "{label}: unclosed {depth:?}");
    assert!(script.ends_with("\nexit 0\n"), "{label}");
}

/// Every golden PowerShell script passes the structural check, and the cases that carry
/// addresses, routes, DNS, MTU, bonds and VLANs give the matching calls.
#[test]
fn powershell_scripts_are_well_formed_and_carry_the_model() {
    let mut checked = 0;
    for case in cases() {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let (c, _, ifaces) = load(&case);
        let names = assign_names(&c, &ifaces);
        let r = render(Backend::PowerShell, &c, &names, &opts());
        assert_eq!(r.files.len(), 1, "{name}: {r:?}");
        let s = &r.files[0].content;
        powershell_lint(&name, s);
        // Every static address of a link that gets a block is there with its prefix.
        let (addrs, _) = wanted(&c);
        for a in addrs {
            let rendered_link = c
                .links
                .iter()
                .any(|l| l.l3.addresses.iter().any(|x| x.to_string() == a) && l.mac.is_some());
            if rendered_link {
                assert!(s.contains(&format!("'{a}'")), "{name}: {a}\n{s}");
            }
        }
        for l in &c.links {
            if let (Some(m), LinkKind::Physical) = (&l.mac, &l.kind) {
                let win = m.replace(':', "-").to_uppercase();
                assert!(
                    s.contains(&format!("Get-PrimerAdapter '{win}'")),
                    "{name}: {win}"
                );
            }
            if let LinkKind::Bond { .. } = &l.kind {
                assert!(
                    s.contains("Set-PrimerTeam")
                        || r.warnings
                            .iter()
                            .any(|w| w.contains(&format!("{:?}", l.id))),
                    "{name}: bond {}",
                    l.id
                );
            }
            if let Some(mtu) = l.mtu {
                assert!(
                    s.contains(&format!("-Mtu {mtu}"))
                        || r.warnings
                            .iter()
                            .any(|w| w.contains(&format!("{:?}", l.id))),
                    "{name}: mtu of {}",
                    l.id
                );
            }
        }
        checked += 1;
    }
    assert!(checked >= 15, "{checked} cases");
}

/// `netplan generate` over a target root holding primer's netplan file: accepted, and the
/// generated networkd files hold each of `want`.
fn netplan_generate_root(root: &Path, want: &[&str]) {
    require_tool("netplan");
    let o = Command::new("netplan")
        .args(["generate", "--root-dir"])
        .arg(root)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.success() && !err.contains("Error") && !err.contains("WARNING"),
        "netplan generate refused: {}",
        text(&o)
    );
    let gen: String = read_tree(&root.join("run/systemd/network"))
        .into_values()
        .collect();
    for w in want {
        assert!(gen.contains(&format!("{w}\n")), "{w} not generated:\n{gen}");
    }
}

/// `ifquery --list --allow=auto` of an interfaces file (patterns expanded against this
/// machine's interfaces, as ifupdown does at boot), without ifupdown's built-in `lo` unless
/// the file maps it.
fn ifquery_list(file: &Path) -> Vec<String> {
    require_tool("ifquery");
    let o = Command::new("ifquery")
        .arg("-i")
        .arg(file)
        .args(["--list", "--allow=auto"])
        .output()
        .unwrap();
    assert!(
        o.status.success() && o.stderr.is_empty(),
        "ifquery --list: {}",
        text(&o)
    );
    let mapped_lo = fs::read_to_string(file)
        .unwrap()
        .contains("auto mac/00:00:00:00:00:00/=");
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter(|l| *l != "lo" || mapped_lo)
        .map(str::to_string)
        .collect()
}

/// `ifquery IFACE` (or `PHYS=LOGICAL`): the options of its stanza, as ifupdown parsed them.
fn ifquery(file: &Path, iface: &str) -> String {
    let o = Command::new("ifquery")
        .arg("-i")
        .arg(file)
        .arg(iface)
        .output()
        .unwrap();
    assert!(
        o.status.success() && o.stderr.is_empty(),
        "ifquery {iface}: {}",
        text(&o)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Issue 11 item 7: `primer net render --backend eni` for an image whose NICs are not present
/// renders MAC-mapped stanzas (`auto mac/MAC/=primer-mac-…`). ifupdown's own parser accepts
/// them; the logical stanza holds the addresses and routes (commands on `"$IFACE"`, the real
/// name); and with a MAC this machine has, ifupdown's pattern expansion picks exactly that
/// interface and `ifup -a --no-act` configures it under the logical stanza.
#[test]
fn eni_offline_maps_stanzas_by_mac() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("network-config");
    let render_eni = |mac: &str| -> String {
        fs::write(
            &input,
            format!(
                "version: 2\nethernets:\n  nic0:\n    match: {{macaddress: \"{mac}\"}}\n    set-name: lan0\n    addresses: [192.0.2.20/24, \"2001:db8::20/64\"]\n    routes: [{{to: 198.51.100.0/24, via: 192.0.2.1}}]\n"
            ),
        )
        .unwrap();
        let empty = tempfile::tempdir().unwrap();
        let o = primer(&[
            "net",
            "render",
            "--backend",
            "eni",
            "--input",
            input.to_str().unwrap(),
            "--root",
            empty.path().to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", text(&o));
        assert!(!text(&o).contains("ifupdown needs a name"), "{}", text(&o));
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter(|l| !l.starts_with("# file: "))
            .map(|l| format!("{l}\n"))
            .collect()
    };
    let eni = render_eni("52:54:00:12:34:56");
    let logical = "primer-mac-525400123456";
    assert!(
        eni.contains(&format!(
            "auto mac/52:54:00:12:34:56/={logical}\niface {logical} inet static\n"
        )),
        "{eni}"
    );
    assert!(eni.contains("dev \"$IFACE\""), "{eni}");
    let f = dir.path().join("interfaces");
    fs::write(&f, &eni).unwrap();
    // No interface here has that MAC: the pattern expands to nothing, and parses.
    assert!(ifquery_list(&f).is_empty());
    let q = ifquery(&f, &format!("ens3={logical}"));
    for want in [
        "address: 192.0.2.20\n",
        "up: ip route add 198.51.100.0/24 via 192.0.2.1 dev \"$IFACE\"\n",
    ] {
        assert!(q.contains(want), "{want}: {q}");
    }

    // A MAC this machine has (the first NIC with one; lo's 00:00:… otherwise): ifupdown maps
    // that interface, whatever its name, to the logical stanza.
    let (host_if, host_mac) = fs::read_dir("/sys/class/net")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            let m = fs::read_to_string(e.path().join("address")).ok()?;
            let m = m.trim().to_string();
            (m.len() == 17).then_some((n, m))
        })
        .min_by_key(|(n, m)| (m == "00:00:00:00:00:00", n.clone()))
        .expect("an interface with a MAC");
    let eni = render_eni(&host_mac);
    fs::write(&f, &eni).unwrap();
    assert_eq!(ifquery_list(&f), std::slice::from_ref(&host_if), "{eni}");
    require_tool("ifup");
    let o = Command::new("ifup")
        .args(["-a", "--no-act", "-v", "-i"])
        .arg(&f)
        .output()
        .unwrap();
    let logical = format!("primer-mac-{}", host_mac.replace(':', ""));
    assert!(
        text(&o).contains(&format!("configuring interface {host_if}={logical} (inet)")),
        "{}",
        text(&o)
    );
}
