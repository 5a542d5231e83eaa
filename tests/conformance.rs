//! Conformance: every case in `../shared/fixtures` (real drive trees, NoCloud seeds and OVF
//! environments from public projects: `os-*`, `nc-*`, `ovf-*`) parses, prints a one-line
//! summary, and a full plan + apply into a scratch root succeeds without a panic; and every
//! case agrees, field by field, with its expectation in `tests/fixtures/conformance-expect.json`
//! (written by reading each drive against FORMATS.md, never from primer's output). Skips with a
//! printed reason when the shared folder is absent (CI has it). Must not write outside its
//! temporary directories.

mod common;

use std::collections::BTreeMap;

use common::*;
use serde_json::{json as j, Value};

#[test]
fn every_shared_fixture_parses_and_applies() {
    let Some(dir) = shared_fixtures() else {
        println!("SKIP conformance: ../shared/fixtures not present beside the checkout");
        return;
    };
    let mut cases: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("fixture.json").is_file())
        .collect();
    cases.sort();
    let mut per_prefix: BTreeMap<String, usize> = BTreeMap::new();
    let mut refused = 0;
    for case in &cases {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let fx: serde_json::Value =
            serde_json::from_slice(&std::fs::read(case.join("fixture.json")).unwrap()).unwrap();
        let input = case.join(fx["input"].as_str().unwrap_or("drive"));
        let input_s = input.to_str().unwrap();
        *per_prefix
            .entry(name.split('-').next().unwrap_or_default().to_string())
            .or_default() += 1;
        let o = primer(&["show", "--json", "--source", input_s]);
        assert!(!text(&o).contains("panicked"), "{name}: {}", text(&o));
        if o.status.code() == Some(1) {
            // A drive without a usable instance id (Ironic's packed sample holds `{}`) must be a
            // clear error naming the device, the file and the field; nothing else may fail.
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(
                err.contains(input_s) && err.contains("meta") && err.contains("uuid"),
                "{name}: unclear error: {err}"
            );
            println!("{name}: refused: {}", err.trim());
            refused += 1;
            continue;
        }
        assert!(o.status.success(), "{name}: {}", text(&o));
        let v = json(&o);
        let i = &v["instance"];
        let format = i["format"].as_str().unwrap_or("?");
        let want: &[&str] = match fx["kind"].as_str() {
            Some("configdrive") => &["openstack", "cloudstack"],
            Some("nocloud") => &["nocloud"],
            Some("ovf") => &["ovf"],
            other => panic!("{name}: unknown kind {other:?}"),
        };
        assert!(want.contains(&format), "{name}: detected as {format}");
        let warnings = v["warnings"]["warnings"].as_array().unwrap();
        for w in warnings {
            assert!(
                w["file"].as_str().is_some_and(|f| !f.is_empty()),
                "{name}: warning without file: {w}"
            );
        }
        println!(
            "{name}: format={format} version={} id={} hostname={} keys={} warnings={}",
            i["version"].as_str().unwrap_or("?"),
            i["instance_id"].as_str().unwrap_or("?"),
            i["hostname"].as_str().unwrap_or("-"),
            i["ssh_keys"].as_array().map_or(0, |k| k.len()),
            warnings.len()
        );
        // An image of the same seed (a NoCloud ISO) gives the same instance.
        if let Ok(images) = std::fs::read_dir(case.join("image")) {
            for img in images.flatten() {
                let o = primer(&["show", "--json", "--source", img.path().to_str().unwrap()]);
                assert!(o.status.success(), "{name}: image: {}", text(&o));
                assert_eq!(
                    json(&o)["instance"],
                    *i,
                    "{name}: image differs from the tree"
                );
            }
        }
        let root = scratch_root();
        let o = primer(&[
            "run",
            "--source",
            input_s,
            "--root",
            root.path().to_str().unwrap(),
        ]);
        assert!(
            matches!(o.status.code(), Some(0) | Some(3)),
            "{name}: {}",
            text(&o)
        );
        assert!(!text(&o).contains("panicked"), "{name}: {}", text(&o));
    }
    println!(
        "{} cases ({}), {} parsed and applied, {refused} refused with a clear error",
        cases.len(),
        per_prefix
            .iter()
            .map(|(p, n)| format!("{n} {p}-*"))
            .collect::<Vec<_>>()
            .join(", "),
        cases.len() - refused
    );
    for p in ["os", "nc", "ovf"] {
        assert!(
            per_prefix.contains_key(p),
            "no {p}-* cases in {}",
            dir.display()
        );
    }
    assert!(
        refused <= 1,
        "only the uuid-less Ironic sample may be refused"
    );
}

/// The expectations, one object per case, written by reading each drive (not from primer).
const EXPECT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/conformance-expect.json"
);

/// Every case agrees with its expectation in `tests/fixtures/conformance-expect.json`: the
/// instance id (`show --json`), the host name and FQDN and the SSH keys a `run --root` applies
/// (`/etc/hostname`, the `127.0.1.1` line of `/etc/hosts`, every `authorized_keys`), and per
/// link the network `net render --backend networkd` gives. Every mismatch of every case is
/// collected into one failure (case, field, expected, got), so one run shows them all.
#[test]
fn every_shared_fixture_matches_its_expectation() {
    let Some(dir) = shared_fixtures() else {
        println!("SKIP conformance: ../shared/fixtures not present beside the checkout");
        return;
    };
    let expect: serde_json::Map<String, Value> =
        serde_json::from_slice(&std::fs::read(EXPECT).unwrap()).unwrap();
    let mut cases: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("fixture.json").is_file())
        .collect();
    cases.sort();
    let mut bad = Mismatches::default();
    let mut checked = 0;
    for case in &cases {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let Some(want) = expect.get(&name) else {
            bad.push(&name, "expectation", "an entry", "none in the data file");
            continue;
        };
        let fx: Value =
            serde_json::from_slice(&std::fs::read(case.join("fixture.json")).unwrap()).unwrap();
        let input = case.join(fx["input"].as_str().unwrap_or("drive"));
        check_case(&name, input.to_str().unwrap(), want, &mut bad);
        checked += 1;
    }
    for name in expect.keys() {
        if !cases
            .iter()
            .any(|c| c.file_name().unwrap().to_string_lossy() == *name)
        {
            bad.push(name, "case", "a folder in ../shared/fixtures", "none");
        }
    }
    println!(
        "{checked} cases, {} fields compared with {EXPECT}: {} mismatches",
        bad.1,
        bad.0.len()
    );
    assert!(
        checked > 0 && bad.1 >= checked * 5,
        "too little compared: {checked} cases, {} fields",
        bad.1
    );
    assert!(
        bad.0.is_empty(),
        "{} mismatches with {EXPECT}:\n{}",
        bad.0.len(),
        bad.0.join("\n")
    );
}

/// Every mismatch found, and how many fields were compared (so a run that compares nothing
/// fails).
#[derive(Default)]
struct Mismatches(Vec<String>, usize);

impl Mismatches {
    fn push(
        &mut self,
        case: &str,
        field: &str,
        want: impl std::fmt::Display,
        got: impl std::fmt::Display,
    ) {
        self.0
            .push(format!("{case}: {field}: expected {want}, got {got}"));
    }
    fn cmp(&mut self, case: &str, field: &str, want: &Value, got: &Value) {
        self.1 += 1;
        if want != got {
            self.push(case, field, want, got);
        }
    }
}

fn check_case(name: &str, input: &str, want: &Value, bad: &mut Mismatches) {
    let o = primer(&["show", "--json", "--source", input]);
    if want["refused"].as_bool() == Some(true) {
        bad.cmp(
            name,
            "show exit code (refused)",
            &j!(1),
            &j!(o.status.code()),
        );
        return;
    }
    if !o.status.success() {
        bad.push(name, "show", "exit 0", text(&o));
        return;
    }
    let shown = json(&o);
    bad.cmp(
        name,
        "instance_id",
        &want["instance_id"],
        &shown["instance"]["instance_id"],
    );
    // Secrets are shown only by their size: the decoded random seed and the admin password.
    for (field, key) in [
        ("random_seed_bytes", "random_seed"),
        ("admin_pass_bytes", "admin_pass"),
    ] {
        let size = shown["instance"][key].as_str().and_then(|s| {
            s.strip_prefix("<redacted ")?
                .strip_suffix(" bytes>")?
                .parse::<u64>()
                .ok()
        });
        bad.cmp(name, field, &want[field], &j!(size));
    }

    // What a run applies: host name, FQDN, keys.
    let root = scratch_root();
    let o = primer(&[
        "run",
        "--source",
        input,
        "--root",
        root.path().to_str().unwrap(),
    ]);
    if !matches!(o.status.code(), Some(0) | Some(3)) {
        bad.push(name, "run", "exit 0 or 3", text(&o));
    }
    let (host, fqdn) = applied_names(root.path());
    bad.cmp(name, "hostname", &want["hostname"], &host);
    bad.cmp(name, "fqdn", &want["fqdn"], &fqdn);
    let mut want_keys: Vec<Value> = want["ssh_keys"].as_array().cloned().unwrap_or_default();
    want_keys.sort_by_key(|v| v.to_string());
    bad.cmp(
        name,
        "ssh_keys",
        &Value::Array(want_keys),
        &applied_keys(root.path()),
    );

    // The network one backend gets, per link.
    let o = primer(&[
        "net",
        "render",
        "--backend",
        "networkd",
        "--json",
        "--source",
        input,
        "--root",
        root.path().to_str().unwrap(),
    ]);
    let files = match o.status.code() {
        Some(0) => json(&o)["files"].as_array().cloned().unwrap_or_default(),
        // No network data on the drive.
        Some(10) => Vec::new(),
        _ => {
            bad.push(name, "net render", "exit 0 or 10", text(&o));
            return;
        }
    };
    let got = networkd_links(&files);
    let want_links = want["links"].as_object().cloned().unwrap_or_default();
    let global_dns: Vec<Value> = want["dns"].as_array().cloned().unwrap_or_default();
    for (key, wl) in &want_links {
        let field = |f: &str| format!("link {key}: {f}");
        let Some(gl) = got.get(key) else {
            bad.push(
                name,
                &field("rendered"),
                "a link",
                format!("none (rendered: {:?})", got.keys().collect::<Vec<_>>()),
            );
            continue;
        };
        for (f, wv) in wl.as_object().unwrap() {
            let wv = match f.as_str() {
                // A link with layer-3 configuration also carries the machine-wide servers.
                "dns" => {
                    let has_l3 = !wl["addresses"].as_array().is_none_or(|a| a.is_empty())
                        || wl["dhcp4"] == j!(true)
                        || wl["ipv6"].as_str().is_some_and(|m| m != "none");
                    let mut all: Vec<Value> = wv.as_array().cloned().unwrap_or_default();
                    if has_l3 {
                        all.extend(global_dns.iter().cloned());
                    }
                    sorted_set(all)
                }
                "routes" => sorted_set(wv.as_array().cloned().unwrap_or_default()),
                "bond" => {
                    let mut b = wv.clone();
                    b["members"] = sorted_set(b["members"].as_array().cloned().unwrap_or_default());
                    b
                }
                _ => wv.clone(),
            };
            bad.cmp(name, &field(f), &wv, gl.get(f).unwrap_or(&Value::Null));
        }
    }
    for key in got.keys() {
        if !want_links.contains_key(key) {
            bad.push(name, &format!("link {key}"), "no such link", "rendered");
        }
    }
    // Search domains: the union over all links.
    let want_search = sorted_set(want["search"].as_array().cloned().unwrap_or_default());
    let got_search = sorted_set(
        got.values()
            .flat_map(|l| l["search"].as_array().cloned().unwrap_or_default())
            .collect(),
    );
    bad.cmp(name, "search", &want_search, &got_search);
}

fn sorted_set(mut v: Vec<Value>) -> Value {
    v.sort_by_key(|x| x.to_string());
    v.dedup();
    Value::Array(v)
}

/// The short name in `<root>/etc/hostname` and the FQDN of primer's `127.0.1.1` line (null
/// when that line names only the short name).
fn applied_names(root: &std::path::Path) -> (Value, Value) {
    let host = std::fs::read_to_string(root.join("etc/hostname"))
        .ok()
        .map(|s| s.trim().to_string());
    let hosts = std::fs::read_to_string(root.join("etc/hosts")).unwrap_or_default();
    let fqdn = hosts
        .lines()
        .filter(|l| l.starts_with("127.0.1.1"))
        .find_map(|l| {
            let names: Vec<&str> = l.split('#').next()?.split_whitespace().skip(1).collect();
            let first = *names.first()?;
            (Some(first) != host.as_deref()).then(|| first.to_string())
        });
    (j!(host), j!(fqdn))
}

/// `type comment` of every key line of every `authorized_keys` under the root, sorted.
fn applied_keys(root: &std::path::Path) -> Value {
    let mut files = vec![root.join("root/.ssh/authorized_keys")];
    if let Ok(homes) = std::fs::read_dir(root.join("home")) {
        files.extend(
            homes
                .flatten()
                .map(|h| h.path().join(".ssh/authorized_keys")),
        );
    }
    let mut keys = Vec::new();
    for f in files {
        for line in std::fs::read_to_string(f).unwrap_or_default().lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            keys.push(j!(key_summary(line)));
        }
    }
    keys.sort_by_key(|v| v.to_string());
    Value::Array(keys)
}

/// `type comment` of one `authorized_keys` line (options before the type are skipped).
fn key_summary(line: &str) -> String {
    let t: Vec<&str> = line.split_whitespace().collect();
    match t
        .iter()
        .position(|w| w.starts_with("ssh-") || w.starts_with("ecdsa-") || w.starts_with("sk-"))
    {
        Some(i) => {
            let mut s = t[i].to_string();
            for w in t.iter().skip(i + 2) {
                s.push(' ');
                s.push_str(w);
            }
            s
        }
        None => line.to_string(),
    }
}

/// One systemd unit file: its sections in order, each with its `key=value` lines in order.
type Ini = Vec<(String, Vec<(String, String)>)>;

fn parse_ini(text: &str) -> Ini {
    let mut out: Ini = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            out.push((s.to_string(), Vec::new()));
        } else if let (Some((k, v)), Some(last)) = (line.split_once('='), out.last_mut()) {
            last.1.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    out
}

fn ini_get<'a>(ini: &'a Ini, section: &str, key: &str) -> Vec<&'a str> {
    ini.iter()
        .filter(|(s, _)| s == section)
        .flat_map(|(_, kv)| kv.iter().filter(|(k, _)| k == key).map(|(_, v)| v.as_str()))
        .collect()
}

/// networkd `[Bond]` keys and the kernel option each sets; `ms`: a time in milliseconds.
const NETWORKD_BOND: &[(&str, &str, bool)] = &[
    ("MIIMonitorSec", "miimon", true),
    ("TransmitHashPolicy", "xmit_hash_policy", false),
    ("LACPTransmitRate", "lacp_rate", false),
    ("UpDelaySec", "updelay", true),
    ("DownDelaySec", "downdelay", true),
    ("PrimaryReselectPolicy", "primary_reselect", false),
    ("ARPIntervalSec", "arp_interval", true),
    ("ARPIPTargets", "arp_ip_target", false),
    ("ARPValidate", "arp_validate", false),
    ("ARPAllTargets", "arp_all_targets", false),
    ("FailOverMACPolicy", "fail_over_mac", false),
    ("GratuitousARP", "num_grat_arp", false),
    ("AdSelect", "ad_select", false),
    ("AdActorSystemPriority", "ad_actor_sys_prio", false),
    ("AdUserPortKey", "ad_user_port_key", false),
    ("AdActorSystem", "ad_actor_system", false),
    ("MinLinks", "min_links", false),
    ("AllSlavesActive", "all_slaves_active", false),
    ("PacketsPerSlave", "packets_per_slave", false),
    ("LearnPacketIntervalSec", "lp_interval", false),
    ("ResendIGMP", "resend_igmp", false),
];

/// A number when the text is one, else the text.
fn num_or_str(s: &str) -> Value {
    s.parse::<u64>().map(|n| j!(n)).unwrap_or_else(|_| j!(s))
}

/// Canonical `addr/prefix` (IPv6 compressed), or the text when it does not parse.
fn canon_net(s: &str) -> String {
    match s.split_once('/') {
        Some((a, p)) => match a.parse::<std::net::IpAddr>() {
            Ok(ip) => format!("{ip}/{p}"),
            Err(_) => s.to_string(),
        },
        None => s
            .parse::<std::net::IpAddr>()
            .map_or_else(|_| s.to_string(), |ip| ip.to_string()),
    }
}

/// The links networkd files describe, keyed as the expectations key them: a physical link
/// by its lower-case MAC (or its name when matched by name), a bond by its name, a VLAN as
/// `vlan <parent key> <id>`. Each holds the expectation's fields.
fn networkd_links(files: &[Value]) -> BTreeMap<String, Value> {
    let mut link_names: BTreeMap<String, String> = BTreeMap::new();
    let mut netdevs: BTreeMap<String, Ini> = BTreeMap::new();
    let mut networks: Vec<(String, Ini)> = Vec::new();
    for f in files {
        let path = f["path"].as_str().unwrap_or_default();
        let ini = parse_ini(f["content"].as_str().unwrap_or_default());
        let mac = ini_get(&ini, "Match", "PermanentMACAddress")
            .into_iter()
            .chain(ini_get(&ini, "Match", "MACAddress"))
            .next()
            .map(|m| m.to_ascii_lowercase());
        if path.ends_with(".link") {
            if let (Some(mac), Some(n)) = (mac, ini_get(&ini, "Link", "Name").first()) {
                link_names.insert(mac, n.to_string());
            }
        } else if path.ends_with(".netdev") {
            if let Some(n) = ini_get(&ini, "NetDev", "Name").first() {
                netdevs.insert(n.to_string(), ini);
            }
        } else if path.ends_with(".network") {
            let key = mac.or_else(|| {
                ini_get(&ini, "Match", "Name")
                    .first()
                    .map(|n| n.to_string())
            });
            networks.push((key.unwrap_or_else(|| path.to_string()), ini));
        }
    }
    // OS name of a netdev -> key; a VLAN's parent is the network that lists it.
    let mut keys: BTreeMap<String, String> = BTreeMap::new();
    for (name, ini) in &netdevs {
        let kind = ini_get(ini, "NetDev", "Kind")
            .first()
            .copied()
            .unwrap_or("");
        let key = if kind == "vlan" {
            let parent = networks
                .iter()
                .find(|(_, n)| ini_get(n, "Network", "VLAN").contains(&name.as_str()))
                .map_or("?", |(k, _)| k.as_str());
            let id = ini_get(ini, "VLAN", "Id").first().copied().unwrap_or("?");
            format!("vlan {parent} {id}")
        } else {
            name.clone()
        };
        keys.insert(name.clone(), key);
    }
    let mut out: BTreeMap<String, Value> = BTreeMap::new();
    for (mkey, ini) in &networks {
        let key = keys.get(mkey).cloned().unwrap_or_else(|| mkey.clone());
        let netdev = netdevs.get(mkey);
        let kind = netdev
            .and_then(|d| ini_get(d, "NetDev", "Kind").first().copied())
            .map_or("physical", |k| k);
        let mut l = j!({"kind": kind});
        let mtu = ini_get(ini, "Link", "MTUBytes")
            .first()
            .copied()
            .or_else(|| netdev.and_then(|d| ini_get(d, "NetDev", "MTUBytes").first().copied()))
            .map(num_or_str);
        l["mtu"] = mtu.unwrap_or(Value::Null);
        l["addresses"] = ini_get(ini, "Network", "Address")
            .iter()
            .map(|a| j!(canon_net(a)))
            .collect();
        let dhcp = ini_get(ini, "Network", "DHCP")
            .first()
            .copied()
            .unwrap_or("no");
        l["dhcp4"] = j!(matches!(dhcp, "yes" | "ipv4"));
        let ra = ini_get(ini, "Network", "IPv6AcceptRA").first().copied() == Some("yes");
        l["ipv6"] = j!(if matches!(dhcp, "yes" | "ipv6") {
            "dhcp6"
        } else if ra {
            "slaac"
        } else {
            "none"
        });
        // Default routes per family in metric order (stable); other routes as a set.
        let mut defaults: Vec<(u64, bool, String)> = Vec::new();
        let mut routes = Vec::new();
        for (s, kv) in ini {
            if s != "Route" {
                continue;
            }
            let get = |k: &str| kv.iter().find(|(x, _)| x == k).map(|(_, v)| v.as_str());
            let gw = get("Gateway").map(canon_net).unwrap_or_default();
            let dest = get("Destination").map(canon_net).unwrap_or_default();
            let metric = get("Metric").and_then(|m| m.parse().ok()).unwrap_or(0);
            match dest.as_str() {
                "0.0.0.0/0" => defaults.push((metric, false, gw)),
                "::/0" => defaults.push((metric, true, gw)),
                _ => routes.push(j!(format!("{dest} via {gw}"))),
            }
        }
        defaults.sort_by_key(|d| d.0);
        l["gateways4"] = defaults.iter().filter(|d| !d.1).map(|d| j!(d.2)).collect();
        l["gateways6"] = defaults.iter().filter(|d| d.1).map(|d| j!(d.2)).collect();
        l["routes"] = sorted_set(routes);
        l["dns"] = sorted_set(
            ini_get(ini, "Network", "DNS")
                .iter()
                .map(|d| j!(canon_net(d)))
                .collect(),
        );
        l["search"] = ini_get(ini, "Network", "Domains")
            .iter()
            .flat_map(|d| d.split_whitespace())
            .map(|d| j!(d))
            .collect();
        if let Some(n) = link_names.get(mkey) {
            l["name"] = j!(n);
        }
        if let Some(d) = netdev {
            if let Some(m) = ini_get(d, "NetDev", "MACAddress").first() {
                l["mac"] = j!(m.to_ascii_lowercase());
            }
            if kind == "bond" {
                let mut opts = serde_json::Map::new();
                for (s, kv) in d {
                    if s != "Bond" {
                        continue;
                    }
                    for (k, v) in kv {
                        if k == "Mode" {
                            continue;
                        }
                        match NETWORKD_BOND.iter().find(|b| b.0 == k) {
                            Some((_, kernel, ms)) => {
                                let v = if *ms { v.trim_end_matches("ms") } else { v };
                                opts.insert(kernel.to_string(), num_or_str(v));
                            }
                            None => {
                                opts.insert(format!("networkd:{k}"), j!(v));
                            }
                        }
                    }
                }
                let members: Vec<Value> = networks
                    .iter()
                    .filter(|(_, n)| ini_get(n, "Network", "Bond").contains(&mkey.as_str()))
                    .map(|(k, _)| j!(k))
                    .collect();
                let primary = networks
                    .iter()
                    .filter(|(_, n)| ini_get(n, "Network", "Bond").contains(&mkey.as_str()))
                    .find(|(_, n)| ini_get(n, "Network", "PrimarySlave").contains(&"yes"))
                    .map(|(k, _)| k.clone());
                if let Some(p) = primary {
                    opts.insert("primary".into(), j!(p));
                }
                l["bond"] = j!({
                    "mode": ini_get(d, "Bond", "Mode").first(),
                    "members": sorted_set(members),
                    "options": opts,
                });
            }
            if kind == "vlan" {
                let parent = key.split(' ').nth(1).unwrap_or("?");
                let id = ini_get(d, "VLAN", "Id").first().map(|i| num_or_str(i));
                l["vlan"] = j!({"id": id, "parent": parent});
            }
        }
        out.insert(key, l);
    }
    // A netdev without a .network of its own still is a link.
    for (name, d) in &netdevs {
        let key = &keys[name];
        if !out.contains_key(key) {
            let kind = ini_get(d, "NetDev", "Kind").first().copied().unwrap_or("?");
            out.insert(key.clone(), j!({"kind": kind}));
        }
    }
    out
}
