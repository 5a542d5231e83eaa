//! Hostile drives: network strings that would reach rendered files (issue 10, item 1). Every
//! case goes through a real producer (a config-2 ISO made with genisoimage, or a NoCloud seed
//! directory) and the real binary for every backend, and asserts: the exit code, a warning
//! naming the file and the field, that no file under the target's `/etc` holds the injected
//! text, that the rest of the network is still rendered, and that `ifquery` and
//! `netplan generate` accept the ifupdown and netplan output. The Windows backend
//! (`powershell`, `/ProgramData/primer/network.ps1`) goes through the same cases, plus its own:
//! quotes of every kind (PowerShell ends a single-quoted literal on U+2018 to U+201B too),
//! `$(...)`, backtick, newline and very long values.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;

/// The text every hostile value carries: found in no rendered file, or the test fails.
const MARK: &str = "INJECTED";

const BACKENDS: [&str; 5] = ["networkd", "networkmanager", "eni", "netplan", "powershell"];

/// Cases whose kept link is matched by name alone once the hostile MAC is dropped: the
/// Windows script cannot find it (adapters by MAC only) and warns instead.
const WINDOWS_NEEDS_MAC: &[&str] = &["mac newline"];

/// Every file a backend renders under the target: `/etc` and, for Windows, `/ProgramData`.
fn rendered(root: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut v = files(&root.join("etc"));
    v.extend(files(&root.join("ProgramData")));
    v
}

/// How the hostile network document reaches primer.
enum Input {
    /// OpenStack `network_data.json` on a config-2 ISO built with genisoimage.
    NetworkData(serde_json::Value),
    /// NoCloud seed directory with this `network-config` (v1 or v2, written as JSON, which
    /// YAML reads too; every control character escaped so the document itself parses).
    NoCloud(serde_json::Value),
}

struct Case {
    name: &'static str,
    input: Input,
    /// The warning names this file and holds this field.
    file: &'static str,
    field: &'static str,
    /// A value of the same document that must still be rendered (the rest is kept).
    kept: &'static str,
}

/// JSON text with every control character, DEL and line separator as a `\uXXXX` escape (YAML
/// refuses some of them raw, and folds others into spaces).
fn escaped_json(v: &serde_json::Value) -> String {
    let s = serde_json::to_string_pretty(v).unwrap();
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        if (c.is_control() && c != '\n') || matches!(c, '\u{2028}' | '\u{2029}') {
            o.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            o.push(c);
        }
    }
    o
}

/// Builds the drive of a case; returns what `--source` takes.
fn build(input: &Input, dir: &Path) -> PathBuf {
    match input {
        Input::NetworkData(nd) => {
            let tree = dir.join("tree");
            write_drive_tree(&tree, &sample_meta("nethost", &[ED]));
            for v in ["latest", "2018-08-27"] {
                fs::write(
                    tree.join("openstack").join(v).join("network_data.json"),
                    serde_json::to_vec(nd).unwrap(),
                )
                .unwrap();
            }
            let iso = dir.join("config-2.iso");
            make_iso(&tree, &iso, IsoTool::Nova);
            iso
        }
        Input::NoCloud(nc) => {
            let seed = dir.join("seed");
            fs::create_dir_all(&seed).unwrap();
            fs::write(
                seed.join("meta-data"),
                "instance-id: hostile-net-1\nlocal-hostname: nethost\n",
            )
            .unwrap();
            fs::write(seed.join("user-data"), "#cloud-config\n").unwrap();
            fs::write(seed.join("network-config"), escaped_json(nc)).unwrap();
            seed
        }
    }
}

/// `primer run` of drive `src` into `root` with a network backend.
fn run_backend(src: &Path, root: &Path, backend: &str) -> std::process::Output {
    let (src, root) = (src.to_str().unwrap(), root.to_str().unwrap());
    primer(&[
        "run",
        "--source",
        src,
        "--root",
        root,
        "--network-backend",
        backend,
    ])
}

/// A target whose NIC `52:54:00:aa:00:01` is `ens3` (a fake sysfs entry), so ifupdown gets a
/// name for the MAC-matched link.
fn target() -> tempfile::TempDir {
    let root = scratch_root();
    let n = root.path().join("sys/class/net/ens3");
    fs::create_dir_all(&n).unwrap();
    fs::write(n.join("address"), "52:54:00:aa:00:01\n").unwrap();
    root
}

/// Every regular file under `dir`, with its content.
fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let Ok(rd) = fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        let ft = e.file_type().unwrap();
        if ft.is_dir() {
            out.extend(files(&p));
        } else if ft.is_file() {
            out.push((p.clone(), fs::read(&p).unwrap()));
        }
    }
    out
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// `ifquery` parses the rendered ifupdown file: it lists the interfaces (`--list -a`), each
/// can be queried, and no option it reports carries the injected text.
fn ifquery_accepts(label: &str, file: &Path) {
    require_tool("ifquery");
    let o = Command::new("ifquery")
        .arg("-i")
        .arg(file)
        .args(["--list", "-a"])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{label}: ifquery --list -a: {}",
        text(&o)
    );
    let listed = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(listed.lines().count() > 0, "{label}: nothing listed");
    for iface in listed.lines() {
        let o = Command::new("ifquery")
            .arg("-i")
            .arg(file)
            .arg(iface)
            .output()
            .unwrap();
        assert!(
            o.status.success() && o.stderr.is_empty() && !contains(&o.stdout, MARK),
            "{label}: ifquery {iface}: {}",
            text(&o)
        );
    }
}

/// `netplan generate` accepts the rendered YAML and generates nothing with the injected text.
fn netplan_accepts(label: &str, root: &Path) {
    require_tool("netplan");
    let gen = tempfile::tempdir().unwrap();
    let src = root.join("etc/netplan");
    fs::create_dir_all(gen.path().join("etc/netplan")).unwrap();
    for (p, c) in files(&src) {
        let to = gen.path().join("etc/netplan").join(p.file_name().unwrap());
        fs::write(&to, c).unwrap();
        fs::set_permissions(&to, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    }
    let o = Command::new("netplan")
        .args(["generate", "--root-dir"])
        .arg(gen.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.success() && !err.contains("Error"),
        "{label}: netplan generate: {}",
        text(&o)
    );
    for (p, c) in files(&gen.path().join("run")) {
        assert!(
            !contains(&c, MARK),
            "{label}: {} generated from it",
            p.display()
        );
    }
}

/// Runs one case through every backend, with `primer run` and `primer net render`.
fn check(case: &Case) {
    let dir = tempfile::tempdir().unwrap();
    let src = build(&case.input, dir.path());
    for b in BACKENDS {
        let label = format!("{} ({b})", case.name);
        let root = target();
        let o = primer(&[
            "run",
            "--source",
            src.to_str().unwrap(),
            "--root",
            root.path().to_str().unwrap(),
            "--network-backend",
            b,
        ]);
        let out = text(&o);
        assert_eq!(o.status.code(), Some(0), "{label}: {out}");
        assert!(!out.contains("panicked"), "{label}: {out}");
        // The warning names file and field, and never prints the value raw.
        let warning = out
            .lines()
            .find(|l| l.contains(case.file) && l.contains(case.field))
            .unwrap_or_else(|| {
                panic!(
                    "{label}: no warning naming {}: {}: {out}",
                    case.file, case.field
                )
            });
        assert!(
            warning.contains(MARK),
            "{label}: the warning shows the value: {warning}"
        );
        for line in out.lines().filter(|l| l.contains(MARK)) {
            assert!(
                line.contains('"'),
                "{label}: a line of output starts with the drive's text (forged log line): {line}"
            );
        }
        // Nothing rendered holds the injected text; the rest of the network is there.
        let etc = rendered(root.path());
        let mut kept = false;
        for (p, c) in &etc {
            assert!(
                !contains(c, MARK),
                "{label}: {} holds the injected text:\n{}",
                p.display(),
                String::from_utf8_lossy(c)
            );
            kept |= contains(c, case.kept);
        }
        if b == "powershell" && WINDOWS_NEEDS_MAC.contains(&case.name) {
            // The link lost its MAC: Windows finds adapters by MAC only, and says so.
            assert!(out.contains("finds adapters by MAC only"), "{label}: {out}");
        } else {
            assert!(kept, "{label}: {:?} no longer rendered: {out}", case.kept);
        }
        match b {
            "eni" => {
                let f = root.path().join("etc/network/interfaces.d/primer");
                assert!(f.exists(), "{label}: {out}");
                ifquery_accepts(&label, &f);
                // resolv.conf: written by primer here (no resolvconf on the target).
                let r = fs::read_to_string(root.path().join("etc/resolv.conf")).unwrap_or_default();
                for l in r.lines() {
                    assert!(
                        l.is_empty()
                            || l.starts_with('#')
                            || l.starts_with("nameserver ")
                            || l.starts_with("search "),
                        "{label}: resolv.conf line {l:?}"
                    );
                }
            }
            "netplan" => netplan_accepts(&label, root.path()),
            "powershell" => powershell_accepts(&label, root.path()),
            _ => {}
        }
        // `net render` prints the same files: nothing injected there either.
        let o = primer(&[
            "net",
            "render",
            "--backend",
            b,
            "--source",
            src.to_str().unwrap(),
            "--root",
            root.path().to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{label}: net render: {}", text(&o));
        assert!(
            !contains(&o.stdout, MARK),
            "{label}: net render printed the injected text: {}",
            text(&o)
        );
    }
}

/// network_data.json with one physical link (`tap0`, the target's NIC) and `dns_search` as
/// given, plus a good server and search domain that must survive.
fn nd_search(search: &[&str]) -> Input {
    let mut list = vec!["good.example".to_string()];
    list.extend(search.iter().map(|s| s.to_string()));
    Input::NetworkData(serde_json::json!({
        "links": [{"id": "tap0", "type": "phy", "ethernet_mac_address": "52:54:00:aa:00:01"}],
        "networks": [{"id": "n0", "link": "tap0", "type": "ipv4", "ip_address": "192.0.2.10",
                      "netmask": "255.255.255.0", "dns_nameservers": ["192.0.2.53"],
                      "dns_search": list}],
        "services": [],
    }))
}

/// The file the warnings name (`openstack/<version>/network_data.json`).
const ND: &str = "/network_data.json";

fn search_case(name: &'static str, evil: &str) -> Case {
    Case {
        name,
        input: nd_search(&[evil]),
        file: ND,
        field: "networks[0] (id n0).dns_search[1]",
        kept: "good.example",
    }
}

#[test]
fn search_domain_with_newline_adds_no_line() {
    // The ifupdown form of the attack: the injected line is an `up` command run as root.
    check(&search_case(
        "newline",
        "evil.example\n    up touch /tmp/INJECTED",
    ));
}

#[test]
fn search_domain_with_comment_character() {
    check(&search_case("hash", "evil.example#INJECTED"));
    check(&search_case("semicolon", "evil.example;INJECTED"));
}

#[test]
fn search_domain_with_nul_c1_and_line_separator() {
    check(&search_case("nul", "evil.example\0INJECTED"));
    check(&search_case("c1 next line", "evil.example\u{85}INJECTED"));
    check(&search_case("escape", "evil.example\u{1b}[2JINJECTED"));
    check(&search_case(
        "line separator",
        "evil.example\u{2028}INJECTED",
    ));
}

#[test]
fn search_domain_with_overlong_label_or_underscore() {
    check(&search_case(
        "overlong label",
        &format!("INJECTED{}.example", "a".repeat(60)),
    ));
    check(&search_case("underscore", "INJECTED_x.example"));
    check(&search_case("space", "a.example INJECTED.example"));
}

#[test]
fn interface_name_with_newline_or_slash_is_dropped_link_kept() {
    for (name, evil) in [
        ("ifname newline", "eth0\nINJECTED"),
        ("ifname slash", "e/INJECTED"),
        ("ifname shell", "e;INJECTED"),
    ] {
        let nd = serde_json::json!({
            "links": [{"id": "tap0", "type": "phy", "name": evil,
                       "ethernet_mac_address": "52:54:00:aa:00:01"}],
            "networks": [{"id": "n0", "link": "tap0", "type": "ipv4",
                          "ip_address": "192.0.2.10", "netmask": "255.255.255.0"}],
        });
        check(&Case {
            name,
            input: Input::NetworkData(nd),
            file: ND,
            field: "links[0] (id tap0).name",
            kept: "192.0.2.10",
        });
    }
}

#[test]
fn link_id_with_newline_drops_the_link_and_its_network_only() {
    // The id would derive file names and NetworkManager connection ids.
    let nd = serde_json::json!({
        "links": [{"id": "tap9\n[connection]\nid=INJECTED", "type": "phy",
                   "ethernet_mac_address": "52:54:00:aa:00:09"},
                  {"id": "tap0", "type": "phy", "ethernet_mac_address": "52:54:00:aa:00:01"}],
        "networks": [{"id": "n9", "link": "tap9\n[connection]\nid=INJECTED", "type": "ipv4_dhcp"},
                     {"id": "n0", "link": "tap0", "type": "ipv4",
                      "ip_address": "192.0.2.10", "netmask": "255.255.255.0"}],
    });
    check(&Case {
        name: "link id newline",
        input: Input::NetworkData(nd),
        file: ND,
        field: "links[0].id",
        kept: "192.0.2.10",
    });
}

#[test]
fn mac_with_newline_is_refused() {
    let nd = serde_json::json!({
        "links": [{"id": "tap0", "type": "phy", "name": "ens3",
                   "ethernet_mac_address": "52:54:00:aa:00:01\nINJECTED"}],
        "networks": [{"id": "n0", "link": "tap0", "type": "ipv4",
                      "ip_address": "192.0.2.10", "netmask": "255.255.255.0"}],
    });
    check(&Case {
        name: "mac newline",
        input: Input::NetworkData(nd),
        file: ND,
        field: "links[0] (id tap0).ethernet_mac_address",
        kept: "192.0.2.10",
    });
}

#[test]
fn bond_option_and_member_with_newline_are_refused() {
    let nd = serde_json::json!({
        "links": [
            {"id": "tap0", "type": "phy", "ethernet_mac_address": "52:54:00:aa:00:01"},
            {"id": "bond0", "type": "bond", "bond_mode": "802.3ad",
             "bond_links": ["tap0", "tap1\nINJECTED"],
             "bond_xmit_hash_policy": "layer3+4\n    up touch /tmp/INJECTED",
             "bond_lacp_rate": "fast\nINJECTED"}],
        "networks": [{"id": "n0", "link": "bond0", "type": "ipv4",
                      "ip_address": "192.0.2.10", "netmask": "255.255.255.0"}],
    });
    for field in [
        "links[1] (id bond0).bond_xmit_hash_policy",
        "links[1] (id bond0).bond_lacp_rate",
        "links[1] (id bond0).bond_links[1]",
    ] {
        check(&Case {
            name: "bond options",
            input: Input::NetworkData(nd.clone()),
            file: ND,
            field,
            kept: "192.0.2.10",
        });
    }
}

#[test]
fn v2_nameservers_search_and_names() {
    let nc = |search: serde_json::Value, bond_key: &str| {
        serde_json::json!({"network": {"version": 2, "ethernets": {
            "eth0": {"match": {"macaddress": "52:54:00:aa:00:01"}, "set-name": "ens3",
                     "addresses": ["192.0.2.10/24"],
                     "nameservers": {"addresses": ["192.0.2.53"], "search": search}},
            "eth1": {"match": {"macaddress": "52:54:00:aa:00:02"}, "set-name": "e;INJECTED"}},
            "bonds": {bond_key: {"interfaces": ["eth1"],
                                 "parameters": {"mode": "active-backup",
                                                "primary": "eth1\nINJECTED"}}}}})
    };
    let input = || {
        nc(
            serde_json::json!(["good.example", "x.example\nINJECTED"]),
            "bond0",
        )
    };
    for field in [
        "ethernets.eth0.nameservers.search[1]",
        "ethernets.eth1: \"e;INJECTED\"",
        "bonds.bond0.parameters.primary",
    ] {
        check(&Case {
            name: "v2",
            input: Input::NoCloud(input()),
            file: "network-config",
            field,
            kept: "good.example",
        });
    }
    // A link key with a newline: the entry is dropped, the rest stays.
    check(&Case {
        name: "v2 key",
        input: Input::NoCloud(nc(
            serde_json::json!(["good.example"]),
            "bond0\n[Network]\nINJECTED=1",
        )),
        file: "network-config",
        field: "bonds.\"bond0\\n[Network]\\nINJECTED=1\"",
        kept: "good.example",
    });
}

#[test]
fn v1_dns_search_per_subnet_and_in_a_nameserver_entry() {
    let nc = serde_json::json!({"network": {"version": 1, "config": [
        {"type": "physical", "name": "ens3", "mac_address": "52:54:00:aa:00:01",
         "subnets": [{"type": "static", "address": "192.0.2.10/24",
                      "dns_nameservers": ["192.0.2.53"],
                      "dns_search": ["good.example", "sub.example\n    up touch /tmp/INJECTED"]}]},
        {"type": "physical", "name": "eth9\nINJECTED", "mac_address": "52:54:00:aa:00:09"},
        {"type": "nameserver", "address": ["192.0.2.54"],
         "search": "other.example bad.example\nINJECTED"}]}});
    for field in [
        "config[0] (name ens3).subnets[0].dns_search[1]",
        "config[2].search",
        "config[1].name",
    ] {
        check(&Case {
            name: "v1",
            input: Input::NoCloud(nc.clone()),
            file: "network-config",
            field,
            kept: "good.example",
        });
    }
}

/// The bond options issue 11 added (every `bond_*` key): a newline in a keyword, a number far
/// out of range (dropped too), an ARP target list of 50,000 (the document cap of 1 MiB refuses larger ones whole) with a newline inside, and a
/// primary with a newline: each refused with its field named, nothing injected, the rest kept.
#[test]
fn new_bond_options_with_newlines_huge_values_and_huge_lists_are_refused() {
    let mut targets: Vec<String> = (0..50_000)
        .map(|i| format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255))
        .collect();
    targets.insert(0, "192.0.2.1\nINJECTED".into());
    let nd = serde_json::json!({
        "links": [
            {"id": "tap0", "type": "phy", "ethernet_mac_address": "52:54:00:aa:00:01"},
            {"id": "bond0", "type": "bond", "bond_mode": "802.3ad",
             "bond_links": ["tap0"],
             "bond_ad_select": "stable\nINJECTED",
             "bond_updelay": "100\nINJECTED",
             "bond_downdelay": 1e30,
             "bond_primary": "tap0\nINJECTED",
             "bond_arp_ip_target": targets}],
        "networks": [{"id": "n0", "link": "bond0", "type": "ipv4",
                      "ip_address": "192.0.2.10", "netmask": "255.255.255.0"}],
    });
    for field in [
        "links[1] (id bond0).bond_ad_select",
        "links[1] (id bond0).bond_updelay",
        "links[1] (id bond0).bond_primary",
        "links[1] (id bond0).bond_arp_ip_target",
    ] {
        check(&Case {
            name: "new bond options",
            input: Input::NetworkData(nd.clone()),
            file: ND,
            field,
            kept: "192.0.2.10",
        });
    }
}

/// Issue 11 item 2: v2 match globs and drivers are drive strings too. A glob or driver with a
/// newline, a comment or shell character, white space (a second networkd `Name=` word) or
/// more than 64 bytes is dropped with a warning naming the field; the MAC-matched link and its
/// search domain stay, in every backend.
#[test]
fn v2_match_globs_and_drivers_with_injections_are_refused() {
    let nc = |key: &str, value: &str| {
        serde_json::json!({"network": {"version": 2, "ethernets": {
            "eth0": {"match": {"macaddress": "52:54:00:aa:00:01"}, "set-name": "ens3",
                     "addresses": ["192.0.2.10/24"],
                     "nameservers": {"addresses": ["192.0.2.53"], "search": ["good.example"]}},
            "evil": {"match": {key: value}, "dhcp4": true}}}})
    };
    for (key, value) in [
        ("name", "eth*\n[Match]\nINJECTED=1"),
        ("name", "eth* INJECTED*"),
        ("name", "e*;INJECTED"),
        ("name", "e*$(INJECTED)"),
        ("driver", "virtio*\"INJECTED"),
        ("driver", "ixgbe\u{2028}INJECTED"),
        (
            "name",
            "*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*INJECTED",
        ),
    ] {
        check(&Case {
            name: "v2 match glob",
            input: Input::NoCloud(nc(key, value)),
            file: "network-config",
            field: if key == "name" {
                "ethernets.evil.match.name"
            } else {
                "ethernets.evil.match.driver"
            },
            kept: "good.example",
        });
    }
}

/// Hostile globs at the limit (`*a*a…*b`, 63 bytes, the backtracking worst case) on many
/// entries, against a target with many NICs of long names: resolving them is bounded (one
/// backtracking point per glob), so the run ends quickly for every backend.
#[test]
fn hostile_globs_resolve_in_bounded_time() {
    let glob = format!("{}b", "*a".repeat(31));
    let mut eth = serde_json::Map::new();
    for i in 0..300 {
        eth.insert(
            format!("g{i}"),
            serde_json::json!({"match": {"name": glob, "driver": glob}, "dhcp4": true}),
        );
    }
    eth.insert(
        "eth0".into(),
        serde_json::json!({"match": {"macaddress": "52:54:00:aa:00:01"}, "dhcp4": true,
                           "nameservers": {"search": ["good.example"]}}),
    );
    let dir = tempfile::tempdir().unwrap();
    let src = build(
        &Input::NoCloud(serde_json::json!({"network": {"version": 2, "ethernets": eth}})),
        dir.path(),
    );
    for b in BACKENDS {
        let root = target();
        for i in 0..64 {
            let n = root
                .path()
                .join(format!("sys/class/net/{}{i:02}", "a".repeat(200)));
            fs::create_dir_all(n.join("device")).unwrap();
            fs::write(n.join("address"), format!("52:54:00:bb:00:{i:02x}\n")).unwrap();
            std::os::unix::fs::symlink(
                format!("../../drivers/{}", "a".repeat(60)),
                n.join("device/driver"),
            )
            .unwrap();
        }
        let t = std::time::Instant::now();
        let o = primer(&[
            "run",
            "--source",
            src.to_str().unwrap(),
            "--root",
            root.path().to_str().unwrap(),
            "--network-backend",
            b,
        ]);
        assert_eq!(o.status.code(), Some(0), "{b}: {}", text(&o));
        assert!(
            t.elapsed() < std::time::Duration::from_secs(20),
            "{b}: {:?}",
            t.elapsed()
        );
        let all: Vec<u8> = rendered(root.path())
            .into_iter()
            .flat_map(|(_, c)| c)
            .collect();
        assert!(contains(&all, "good.example"), "{b}: {}", text(&o));
    }
}

/// The Windows script: there, each line one of the PowerShell primer writes (every literal
/// closed on its line, nothing expandable in it), and no character PowerShell reads as a
/// quote or an expansion outside the few fixed ones of the helpers.
fn powershell_accepts(label: &str, root: &Path) {
    let path = primer::net::render::powershell::PATH;
    let f = root.join(path);
    let script = fs::read_to_string(&f).unwrap_or_else(|e| panic!("{label}: {path}: {e}"));
    assert_eq!(
        primer::net::render::check_lines(path, &script),
        Ok(()),
        "{label}: {script}"
    );
    assert!(
        !script.contains([
            '"', '`', '\u{2018}', '\u{2019}', '\u{201A}', '\u{201B}', '\u{201C}', '\u{201D}',
            '\u{201E}'
        ]),
        "{label}: {script}"
    );
    assert!(script.ends_with("\nexit 0\n"), "{label}: {script}");
}

/// Quotes of every kind, `$(...)`, a backtick, a newline and a very long value where a
/// PowerShell literal would carry them (an interface name, a search domain, a team name): the
/// model boundary drops each with a warning naming the field, in every backend.
#[test]
fn powershell_quotes_expansions_and_long_values_are_refused() {
    // The mark first: a warning shows a long value cut after 200 characters.
    let long = format!("INJECTED{}", "b".repeat(300));
    let evils = [
        "e'INJECTED",
        "e''INJECTED",
        "e\u{2018}INJECTED",
        "e\u{2019};INJECTED;\u{2019}",
        "e\u{201A}INJECTED",
        "e\u{201B}INJECTED",
        "e\u{201C}INJECTED\u{201D}",
        "e\"INJECTED",
        "$(INJECTED)",
        "e`INJECTED",
        "e`nINJECTED",
        "e\nINJECTED",
        long.as_str(),
    ];
    for evil in evils {
        let nd = serde_json::json!({
            "links": [{"id": "tap0", "type": "phy", "name": evil,
                       "ethernet_mac_address": "52:54:00:aa:00:01"}],
            "networks": [{"id": "n0", "link": "tap0", "type": "ipv4",
                          "ip_address": "192.0.2.10", "netmask": "255.255.255.0"}],
        });
        check(&Case {
            name: "powershell ifname",
            input: Input::NetworkData(nd),
            file: ND,
            field: "links[0] (id tap0).name",
            kept: "192.0.2.10",
        });
        check(&search_case("powershell search", evil));
    }
    // A v2 bond key is a link id and its name: the name is refused, the team gets none of it.
    let nc = serde_json::json!({"network": {"version": 2, "ethernets": {
        "eth0": {"match": {"macaddress": "52:54:00:aa:00:01"}, "set-name": "ens3",
                 "nameservers": {"search": ["good.example"]}, "dhcp4": true},
        "eth1": {"match": {"macaddress": "52:54:00:aa:00:02"}}},
        "bonds": {"b'$(INJECTED)": {"interfaces": ["eth1"], "dhcp4": true,
                                     "parameters": {"mode": "active-backup"}}}}});
    let dir = tempfile::tempdir().unwrap();
    let src = build(&Input::NoCloud(nc), dir.path());
    let root = target();
    let o = primer(&[
        "net",
        "render",
        "--backend",
        "powershell",
        "--source",
        src.to_str().unwrap(),
        "--root",
        root.path().to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(!out.contains("$(INJECTED)") && !out.contains("b'"), "{out}");
    assert!(out.contains("'good.example'"), "{out}");
}

/// A link id may hold any one-line text (ids only name links in warnings and file names): one
/// made of every quote PowerShell knows, `$(...)` and a backtick is kept (its link renders)
/// but never reaches the script raw: the step's label carries the id's file-name form.
#[test]
fn powershell_link_id_with_quotes_and_expansions_stays_out_of_the_script() {
    let id = "tap0'$(Restart-Computer)`\u{2018}\u{2019}\u{201A}\u{201B}\u{201C}\u{201D}\"";
    let nd = serde_json::json!({
        "links": [{"id": id, "type": "phy", "name": "ens3",
                   "ethernet_mac_address": "52:54:00:aa:00:01"}],
        "networks": [{"id": "n0", "link": id, "type": "ipv4",
                      "ip_address": "192.0.2.10", "netmask": "255.255.255.0",
                      "routes": [{"network": "0.0.0.0", "netmask": "0.0.0.0",
                                  "gateway": "192.0.2.1"}]}],
    });
    let dir = tempfile::tempdir().unwrap();
    let src = build(&Input::NetworkData(nd), dir.path());
    let root = target();
    let o = run_backend(&src, root.path(), "powershell");
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    powershell_accepts("link id", root.path());
    let script =
        fs::read_to_string(root.path().join(primer::net::render::powershell::PATH)).unwrap();
    assert!(!script.contains("$(Restart-Computer)"), "{script}");
    assert!(
        script.contains("Invoke-PrimerStep 'link tap0___Restart-Computer_"),
        "{script}"
    );
    assert!(script.contains("'192.0.2.10/24'"), "{script}");
    assert!(
        script.contains("@{ To = '0.0.0.0/0'; Via = '192.0.2.1'; Metric = 100 }"),
        "{script}"
    );
    // A second run changes nothing (the plan's own idempotence, same script).
    let o = run_backend(&src, root.path(), "powershell");
    // Exit 10: nothing to do.
    assert_eq!(o.status.code(), Some(10), "{}", text(&o));
    assert!(text(&o).contains("unchanged"), "{}", text(&o));
    assert_eq!(
        fs::read_to_string(root.path().join(primer::net::render::powershell::PATH)).unwrap(),
        script
    );
}

/// A `network_data.json` nested as deep as the source accepts (64 arrays and objects) is
/// rendered; one level deeper the source refuses it with a warning naming the file and the
/// bound, and the run goes on without it. The network parser's own, lower bound (32) once
/// failed the network step of documents 33 to 64 deep (exit 3, "nesting deeper than 32").
#[test]
fn network_data_nested_to_the_source_bound_is_rendered_deeper_refused_clearly() {
    for depth in [33, 63, 64, 65] {
        // The object, `links`, the link: three levels; the rest in an unknown key of the link.
        let mut extra = serde_json::json!(1);
        for _ in 0..depth - 3 {
            extra = serde_json::json!([extra]);
        }
        let nd = serde_json::json!({"links": [{
            "id": "t", "type": "phy", "ethernet_mac_address": "52:54:00:aa:00:01",
            "extra": extra,
        }], "networks": [{"id": "n", "link": "t", "type": "ipv4_dhcp"}]});
        let dir = tempfile::tempdir().unwrap();
        let src = build(&Input::NetworkData(nd), dir.path());
        let root = target();
        let o = run_backend(&src, root.path(), "networkd");
        let out = text(&o);
        assert_eq!(o.status.code(), Some(0), "{depth}: {out}");
        let net = files(&root.path().join("etc/systemd/network"));
        if depth <= 64 {
            assert!(!out.contains("deeper than"), "{depth}: {out}");
            assert!(
                net.iter().any(|(_, c)| contains(c, "DHCP=ipv4")),
                "{depth}: {net:?}: {out}"
            );
        } else {
            assert!(
                out.lines().any(|l| l.contains("network_data.json")
                    && l.contains("nesting deeper than 64")
                    && l.contains("network data ignored")),
                "{depth}: {out}"
            );
            assert!(net.is_empty(), "{depth}: {net:?}");
        }
    }
}
