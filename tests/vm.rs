//! Real-guest tests: a Debian bookworm guest (built by images/test-vm/) with the primer Debian
//! package installed boots under QEMU (TCG) with a config drive attached; primer runs from its
//! systemd unit; the guest reports on the serial console and powers off; the host asserts on
//! the report and, after poweroff, on files read from the disk image.
//!
//! Scenarios: drive in the trailing GPT partition, on a CD-ROM, as a second disk; no drive; a
//! second boot with the same drive; a boot with an updated drive; SSH login with the drive's key;
//! network (one per backend variant: networkd, ifupdown, NetworkManager): three virtio NICs on
//! restricted user networks, static IPv4 + IPv6 + routes + DNS on the first, an active-backup
//! bond of the other two with a VLAN on top, checked inside the guest with `ip -j`; for
//! ifupdown also with the stanzas mapped by MAC (rendered with no NIC present, booted with the
//! NICs under other names).
//! `cargo test --test vm -- --ignored cloud_init_comparison` boots the same guest with Debian's
//! cloud-init instead of primer and prints both services' times.
//!
//! The harness (images, QEMU boots, the guest's report) is `tests/vm_common/mod.rs`, shared
//! with the reclaim guests of `tests/vm_reclaim.rs`.
//!
//! Environment: PRIMER_DEB (a prebuilt package; else packaging/build-deb.sh runs with its own
//! target dir), PRIMER_VM_KEEP=1 (keep every guest's work dir: serial log, overlay disk),
//! PRIMER_VM_CACHE (image cache, default /var/cache/primer-test).

mod common;
#[path = "vm_common/mod.rs"]
mod vm_common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::require_tool;
use vm_common::*;

#[test]
fn trailing_partition() {
    let (_, public) = keypair();
    require_tool("sgdisk");
    let w = Work::new("partition");
    // `primer make-drive --into` the guest's disk, as an operator prepares a bare-metal image:
    // a new trailing partition 2 where Ironic puts it, the ISO in it.
    let tree = drive_tree(&w.path, "drive", &[public], INSTANCE);
    let info = w.make_partition(&tree);
    // Where the base image's own config partition was: the end of the largest free block.
    let (offset, len) = w.cfg;
    assert!(
        info.contains(&format!("First sector: {} ", offset / 512))
            && info.contains(&format!("Partition size: {} sectors", len / 512)),
        "{info}"
    );
    let r = Boot {
        work: &w,
        attach: Attach::Partition,
        drive: None,
        ssh: None,
        nics: &[],
        extra: Extra::default(),
    }
    .run();
    println!("{}", r.timing("partition"));
    assert_applied(&r, "partition", &[public]);
    assert_eq!(r.get("primer_status"), "0");
    assert!(
        r.journal()
            .contains("label config-2 on /dev/vda2 (iso9660)"),
        "{}",
        r.journal()
    );
    assert_mount_agrees(&r, "partition", "/dev/vda2");
    // After poweroff, from the disk image itself.
    assert_eq!(w.read_guest_file("/etc/hostname"), "vm-guest\n");
    assert!(w
        .read_guest_file("/root/.ssh/authorized_keys")
        .contains(public.as_str()));
    let instance = w.read_guest_file(&format!(
        "/var/lib/primer/instance/{INSTANCE}/instance.json"
    ));
    assert!(instance.contains(INSTANCE));
}

#[test]
fn cdrom() {
    let (_, public) = keypair();
    let w = Work::new("cdrom");
    // primer's make-drive ISO with a 200-byte Rock Ridge name (its NM entry continues in a CE
    // area): the guest kernel's isofs must read it as primer's reader does.
    let tree = drive_tree(&w.path, "drive", &[public], INSTANCE);
    let long = format!("long-{}", "n".repeat(195));
    fs::write(tree.join("openstack").join(&long), "long name\n").unwrap();
    let iso = w.path.join("drive.iso");
    common::make_drive(&tree, &iso, common::DriveFs::Iso9660, "config-2");
    let r = Boot {
        work: &w,
        attach: Attach::CdRom,
        drive: Some(iso),
        ssh: None,
        nics: &[],
        extra: Extra::default(),
    }
    .run();
    println!("{}", r.timing("cdrom"));
    assert_applied(&r, "cdrom", &[public]);
    assert!(
        r.journal().contains("on /dev/sr0 (iso9660)"),
        "{}",
        r.journal()
    );
    assert_mount_agrees(&r, "cdrom", "/dev/sr0");
}

#[test]
fn second_disk() {
    let (_, public) = keypair();
    let w = Work::new("disk");
    let iso = drive(&w.path, "drive", &[public]);
    let r = Boot {
        work: &w,
        attach: Attach::SecondDisk,
        drive: Some(iso),
        ssh: None,
        nics: &[],
        extra: Extra::default(),
    }
    .run();
    println!("{}", r.timing("second-disk"));
    assert_applied(&r, "second-disk", &[public]);
    assert!(
        r.journal().contains("on /dev/vdb (iso9660)"),
        "{}",
        r.journal()
    );
    assert_mount_agrees(&r, "second-disk", "/dev/vdb");
}

#[test]
fn vfat_second_disk() {
    let (_, public) = keypair();
    let w = Work::new("vfat");
    // The drive tree on VFAT labelled CONFIG-2 (Ironic's fallback), made by primer's make-drive
    // (mkfs.vfat + mcopy images are proven against the reader in tests/discovery.rs).
    let tree = drive_tree(&w.path, "drive", &[public], INSTANCE);
    let img = w.path.join("drive.vfat");
    common::make_drive(&tree, &img, common::DriveFs::Vfat, "CONFIG-2");
    let r = Boot {
        work: &w,
        attach: Attach::SecondDisk,
        drive: Some(img),
        ssh: None,
        nics: &[],
        extra: Extra::default(),
    }
    .run();
    println!("{}", r.timing("vfat"));
    assert_applied(&r, "vfat", &[public]);
    assert!(
        r.journal().contains("on /dev/vdb (vfat)"),
        "{}",
        r.journal()
    );
    assert_mount_agrees(&r, "vfat", "/dev/vdb");
}

#[test]
fn no_drive() {
    let w = Work::new("nodrive");
    let r = Boot {
        work: &w,
        attach: Attach::None,
        drive: None,
        ssh: None,
        nics: &[],
        extra: Extra::default(),
    }
    .run();
    println!("{}", r.timing("no-drive"));
    assert_unit_ok(&r, "no-drive");
    assert_eq!(r.get("primer_status"), "11", "{}", r.journal());
    assert!(
        r.journal().contains("no config drive found"),
        "{}",
        r.journal()
    );
    assert_eq!(r.get("hostname"), "image-placeholder");
}

#[test]
fn second_boot_unchanged_then_updated_drive() {
    let (_, public) = keypair();
    let w = Work::new("reboot");
    let iso = drive(&w.path, "drive", &[public]);
    let first = Boot {
        work: &w,
        attach: Attach::Partition,
        drive: Some(iso.clone()),
        ssh: None,
        nics: &[],
        extra: Extra::default(),
    }
    .run();
    println!("{}", first.timing("reboot-1"));
    assert_applied(&first, "reboot-1", &[public]);
    // First boot of the instance: the image's host keys replaced, the new ones printed.
    let keys1 = printed_host_keys(&first.serial);
    assert_eq!(keys1.len(), 2, "{}", first.serial);

    // Same disk, same drive: nothing changes, and the journal says so.
    let second = Boot {
        work: &w,
        attach: Attach::None,
        drive: None,
        ssh: None,
        nics: &[],
        extra: Extra::default(),
    }
    .run();
    println!("{}", second.timing("reboot-2 same drive"));
    assert_applied(&second, "reboot-2", &[public]);
    assert_eq!(second.get("primer_status"), "10", "{}", second.journal());
    assert!(second.steps("changed").is_empty(), "{}", second.journal());
    assert!(
        second.journal().contains("summary: 0 changed"),
        "{}",
        second.journal()
    );

    // Updated drive, same instance id: a new key. Only the key (and primer's own copy) changes.
    let extra = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINtqymTVklmxp6/+U+CviC0Xm/x873RZzSWKP1r+ez8O added@test";
    let iso2 = drive(&w.path, "drive2", &[public, extra]);
    let third = Boot {
        work: &w,
        attach: Attach::Partition,
        drive: Some(iso2),
        ssh: None,
        nics: &[],
        extra: Extra::default(),
    }
    .run();
    println!("{}", third.timing("reboot-3 updated drive"));
    assert_applied(&third, "reboot-3", &[public, extra]);
    let mut changed = third.steps("changed");
    changed.sort();
    assert_eq!(
        changed,
        ["copy:*", "instance-json", "record", "ssh-keys"],
        "{}",
        third.journal()
    );
    assert!(
        third.steps("unchanged").contains(&"hostname".to_string()),
        "{}",
        third.journal()
    );
    // Same instance id on every boot so far: no new host keys printed, and the key on disk is
    // the one the first boot printed.
    for r in [&second, &third] {
        assert!(printed_host_keys(&r.serial).is_empty(), "{}", r.serial);
    }
    let on_disk = |w: &Work| {
        let k = w.read_guest_file("/etc/ssh/ssh_host_ed25519_key.pub");
        k.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
    };
    let ed1 = on_disk(&w);
    assert!(keys1.contains(&ed1), "{ed1} not in {keys1:?}");

    // A new instance id (the image booted as another machine): new host keys, all different.
    let iso3 = drive_for(&w.path, "drive3", &[public], "vm-e2e-0002");
    let fourth = Boot {
        work: &w,
        attach: Attach::Partition,
        drive: Some(iso3),
        ssh: None,
        nics: &[],
        extra: Extra::default(),
    }
    .run();
    println!("{}", fourth.timing("reboot-4 new instance id"));
    assert_unit_ok(&fourth, "reboot-4");
    let keys2 = printed_host_keys(&fourth.serial);
    assert_eq!(keys2.len(), 2, "{}", fourth.serial);
    assert!(
        keys2.iter().all(|k| !keys1.contains(k)),
        "{keys1:?} {keys2:?}"
    );
    let ed2 = on_disk(&w);
    assert!(keys2.contains(&ed2), "{ed2} not in {keys2:?}");
    println!("[reboot] host keys kept for the same instance id, replaced for a new one: {keys1:?} -> {keys2:?}");
}

#[test]
fn ssh_login_with_the_drives_key() {
    let (key, public) = keypair();
    let w = Work::new("ssh");
    let iso = drive(&w.path, "drive", &[public]);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let ssh = |cmd: &str| ssh_as(key, port, "root", cmd);
    let known_hosts = w.path.join("known_hosts");
    let mut printed = Vec::new();
    let mut login = None;
    let r = Boot {
        work: &w,
        attach: Attach::Partition,
        drive: Some(iso),
        ssh: Some((port, 150)),
        nics: &[],
        extra: Extra::default(),
    }
    .run_with(|serial| {
        let t = Instant::now();
        // sshd may still be starting when the report marker appears: retry, bounded. The
        // login trusts only the host keys primer printed on the console (issue 11 item 8:
        // what a cloud console shows the user is what sshd presents).
        while t.elapsed() < Duration::from_secs(90) {
            printed = printed_host_keys(&fs::read_to_string(serial).unwrap_or_default());
            let lines: String = printed
                .iter()
                .map(|k| format!("[127.0.0.1]:{port} {k}\n"))
                .collect();
            fs::write(&known_hosts, lines).unwrap();
            let o = ssh_strict(key, port, "root", "hostname", &known_hosts);
            if o.status.success() {
                login = Some((
                    String::from_utf8_lossy(&o.stdout).trim().to_string(),
                    t.elapsed(),
                ));
                break;
            }
            std::thread::sleep(Duration::from_secs(2));
        }
        let _ = ssh("touch /run/primer-e2e-release");
    });
    println!("{}", r.timing("ssh"));
    let (name, took) =
        login.unwrap_or_else(|| panic!("ssh login with the drive's key failed\n{}", r.serial));
    println!(
        "[ssh] logged in as root with the drive's key after {:.1}s, `hostname` -> {name}",
        took.as_secs_f64()
    );
    assert_eq!(name, "vm-guest");
    assert_applied(&r, "ssh", &[public]);
    // The test image generates ed25519 and ecdsa (images/test-vm/build-image.sh).
    let mut types: Vec<&str> = printed.iter().filter_map(|k| k.split(' ').next()).collect();
    types.sort();
    assert_eq!(
        types,
        ["ecdsa-sha2-nistp256", "ssh-ed25519"],
        "{}",
        r.serial
    );
    // The FINGERPRINTS block names the same keys (what a user compares by eye).
    let fp = Command::new("ssh-keygen")
        .args(["-l", "-f"])
        .arg(&known_hosts)
        .output()
        .unwrap();
    let fps: Vec<String> = String::from_utf8_lossy(&fp.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1).map(str::to_string))
        .collect();
    let block = r
        .serial
        .split("-----BEGIN SSH HOST KEY FINGERPRINTS-----")
        .nth(1)
        .and_then(|b| b.split("-----END SSH HOST KEY FINGERPRINTS-----").next())
        .unwrap_or_default();
    assert_eq!(fps.len(), 2, "{}", String::from_utf8_lossy(&fp.stderr));
    for f in &fps {
        assert!(
            block.contains(f.as_str()),
            "{f} not in the printed block:\n{block}"
        );
    }
    println!("[ssh] strict host key check against the console's KEYS block: {printed:?}, fingerprints {fps:?}");
}

/// Benchmark, not a check: the same guest with Debian's cloud-init (ConfigDrive datasource)
/// instead of primer, on the same drive, both measured in this run.
#[test]
#[ignore = "benchmark: cargo test --test vm -- --ignored cloud_init_comparison"]
fn cloud_init_comparison() {
    let (_, public) = keypair();
    let w = Work::new("primer-bench");
    let iso = drive(&w.path, "drive", &[public]);
    let p = Boot {
        work: &w,
        attach: Attach::Partition,
        drive: Some(iso.clone()),
        ssh: None,
        nics: &[],
        extra: Extra::default(),
    }
    .run();
    let primer_ms = p
        .us("primer_exit_us")
        .saturating_sub(p.us("primer_start_us")) as f64
        / 1000.0;

    let (ci_base, off, _) = image("cloudinit", None);
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk.qcow2");
    sh(Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b"])
        .arg(&ci_base)
        .arg(&disk));
    let len = fs::metadata(&iso).unwrap().len();
    sh(Command::new("qemu-io")
        .arg("-c")
        .arg(format!("write -s {} {off} {len}", iso.display()))
        .arg(&disk));
    let cw = Work {
        dir: Some(dir),
        path: disk.parent().unwrap().to_path_buf(),
        name: "cloud-init".into(),
        cfg: (off, 0),
    };
    let c = Boot {
        work: &cw,
        attach: Attach::None,
        drive: None,
        ssh: None,
        nics: &[],
        extra: Extra::default(),
    }
    .run();
    let mut total_ci = 0.0;
    let mut rows = BTreeMap::new();
    for u in [
        "cloud-init-local.service",
        "cloud-init.service",
        "cloud-config.service",
        "cloud-final.service",
    ] {
        let ms = c.us(&format!("active_us:{u}")) as f64 / 1000.0;
        total_ci += ms;
        rows.insert(u, ms);
    }
    println!("{}", p.timing("primer"));
    println!(
        "[cloud-init] boot to E2E report {}s, qemu wall {:.1}s",
        c.get("uptime"),
        c.wall.as_secs_f64()
    );
    for (u, ms) in &rows {
        println!("[cloud-init] {u}: {ms:.0} ms");
    }
    println!("[compare] primer.service {primer_ms:.0} ms vs cloud-init services {total_ci:.0} ms: ratio {:.1}x (TCG)", total_ci / primer_ms.max(0.001));
    assert_eq!(
        c.get("hostname"),
        "vm-guest",
        "cloud-init did not apply the drive: {}",
        c.serial
    );
}

// ---- network, one scenario per backend variant ----

const NIC1: &str = "52:54:00:e2:00:01";
const NIC2: &str = "52:54:00:e2:00:02";
const NIC3: &str = "52:54:00:e2:00:03";

/// The drive's network: static IPv4 + IPv6 + two routes + DNS on NIC 1; an active-backup bond
/// of NICs 2 and 3 (no MAC of its own) with VLAN 42 on top carrying static IPv4 + IPv6 and a
/// route. MTUs below the NICs' 1500 so each one is visibly applied.
fn network_data() -> serde_json::Value {
    serde_json::json!({
        "links": [
            {"id": "tap-nic1", "type": "phy", "ethernet_mac_address": NIC1, "mtu": 1480},
            {"id": "tap-nic2", "type": "phy", "ethernet_mac_address": NIC2, "mtu": 1450},
            {"id": "tap-nic3", "type": "phy", "ethernet_mac_address": NIC3, "mtu": 1450},
            {"id": "bond0", "type": "bond", "bond_mode": "active-backup", "bond_miimon": 100,
             "bond_links": ["tap-nic2", "tap-nic3"], "mtu": 1450},
            {"id": "vlan-e2e", "type": "vlan", "vlan_link": "bond0", "vlan_id": 42, "mtu": 1400}
        ],
        "networks": [
            {"id": "n1v4", "link": "tap-nic1", "type": "ipv4", "ip_address": "10.0.2.15",
             "netmask": "255.255.255.0", "network_id": "a",
             "routes": [
                {"network": "0.0.0.0", "netmask": "0.0.0.0", "gateway": "10.0.2.2"},
                {"network": "192.0.2.0", "netmask": "255.255.255.0", "gateway": "10.0.2.3", "metric": 50}
             ],
             "dns_search": ["e2e.test"]},
            {"id": "n1v6", "link": "tap-nic1", "type": "ipv6", "ip_address": "2001:db8:e2::15/64",
             "network_id": "b",
             "routes": [{"network": "::", "netmask": "::", "gateway": "2001:db8:e2::1"}],
             "services": [{"type": "dns", "address": "2001:db8:e2::53"}]},
            {"id": "vlanv4", "link": "vlan-e2e", "type": "ipv4", "ip_address": "192.168.42.10",
             "netmask": "255.255.255.0", "network_id": "c",
             "routes": [{"network": "198.51.100.0", "netmask": "255.255.255.0", "gateway": "192.168.42.1"}]},
            {"id": "vlanv6", "link": "vlan-e2e", "type": "ipv6", "ip_address": "fd42::10",
             "netmask": "ffff:ffff:ffff:ffff::", "network_id": "d"}
        ],
        "services": [{"type": "dns", "address": "10.0.2.3"}]
    })
}

fn network_drive(dir: &Path) -> PathBuf {
    let tree = dir.join("net-tree");
    let meta = serde_json::json!({"uuid": INSTANCE, "hostname": FQDN, "name": "vm guest"});
    common::write_drive_tree(&tree, &meta);
    for v in ["latest", "2018-08-27"] {
        fs::write(
            tree.join("openstack").join(v).join("network_data.json"),
            serde_json::to_vec_pretty(&network_data()).unwrap(),
        )
        .unwrap();
    }
    let iso = dir.join("net.iso");
    common::make_iso(&tree, &iso, common::IsoTool::Nova);
    iso
}

fn json_kv(r: &Report, k: &str) -> serde_json::Value {
    serde_json::from_str(r.get(k))
        .unwrap_or_else(|e| panic!("{k} is not JSON ({e}): {:?}", r.get(k)))
}

/// The interface with this MAC (its own or, for a bond member, its permanent one).
fn by_mac<'a>(links: &'a [serde_json::Value], mac: &str) -> &'a serde_json::Value {
    links
        .iter()
        .find(|l| l["address"] == mac || l["permaddr"] == mac)
        .unwrap_or_else(|| panic!("no interface with MAC {mac}"))
}

fn by_name<'a>(links: &'a [serde_json::Value], name: &str) -> &'a serde_json::Value {
    links
        .iter()
        .find(|l| l["ifname"] == name)
        .unwrap_or_else(|| panic!("no interface {name}"))
}

/// Global addresses of an interface as `addr/prefix`, sorted.
fn globals(addrs: &[serde_json::Value], ifname: &str) -> Vec<String> {
    let mut v: Vec<String> = addrs
        .iter()
        .filter(|a| a["ifname"] == ifname)
        .flat_map(|a| a["addr_info"].as_array().cloned().unwrap_or_default())
        .filter(|i| i["scope"] == "global")
        .map(|i| format!("{}/{}", i["local"].as_str().unwrap_or(""), i["prefixlen"]))
        .collect();
    v.sort();
    v
}

fn has_route(
    routes: &[serde_json::Value],
    dst: &str,
    gw: &str,
    dev: &str,
    metric: Option<u64>,
) -> bool {
    routes.iter().any(|r| {
        r["dst"] == dst
            && r["gateway"] == gw
            && r["dev"] == dev
            && metric.is_none_or(|m| r["metric"].as_u64() == Some(m))
    })
}

/// Boots `variant` with the network drive and three NICs and checks, inside the guest, that
/// exactly the drive's network is configured.
fn network_scenario(variant: &str) {
    let (base, off, len) = if variant == "base" {
        let a = assets();
        (a.base.clone(), a.cfg_offset, a.cfg_len)
    } else {
        variant_image(variant)
    };
    let w = Work::on(&format!("net-{variant}"), &base, (off, len));
    let iso = network_drive(&w.path);
    let r = Boot {
        work: &w,
        attach: Attach::Partition,
        drive: Some(iso),
        ssh: None,
        nics: &[NIC1, NIC2, NIC3],
        extra: Extra::default(),
    }
    .run();
    println!(
        "{} (network wait {})",
        r.timing(&format!("network-{variant}")),
        r.get("net_wait")
    );
    check_network(&r, variant, true);
    if variant == "base" {
        // A later boot without the drive: primer finds nothing (exit 11) and tears nothing
        // down; the backend brings up exactly the same network from the files left in place.
        sh(Command::new("qemu-io")
            .arg("-c")
            .arg(format!("write -z {off} {len}"))
            .arg(w.disk()));
        let again = Boot {
            work: &w,
            attach: Attach::None,
            drive: None,
            ssh: None,
            nics: &[NIC1, NIC2, NIC3],
            extra: Extra::default(),
        }
        .run();
        println!(
            "{}",
            again.timing("network-base, later boot without the drive")
        );
        assert_eq!(again.get("primer_status"), "11", "{}", again.journal());
        check_network(&again, variant, false);
    }
}

/// Checks the network state a guest reported against the drive's network.
fn check_network(r: &Report, variant: &str, first: bool) {
    let ctx = || {
        format!(
            "[{variant}] files: {}\nNetworkManager devices after the wait: {}\nprimer journal:\n{}\nbackend log:\n{}\naddr: {}\nroute: {}\n{}",
            r.get("net_files"),
            r.get("nm_devices"),
            r.journal(),
            r.all("netlog").join("\n"),
            r.get("ip_addr"),
            r.get("ip_route4"),
            r.get("ip_route6"),
        )
    };
    assert_unit_ok(r, variant);
    let backend = match variant {
        "base" => "networkd",
        "ifupdown" => "eni",
        _ => "networkmanager",
    };
    assert!(
        !first || r.journal().contains(&format!("network ({backend}:")),
        "{}",
        ctx()
    );

    let links: Vec<serde_json::Value> = json_kv(r, "ip_link")
        .as_array()
        .cloned()
        .unwrap_or_default();
    let addrs: Vec<serde_json::Value> = json_kv(r, "ip_addr")
        .as_array()
        .cloned()
        .unwrap_or_default();
    let r4: Vec<serde_json::Value> = json_kv(r, "ip_route4")
        .as_array()
        .cloned()
        .unwrap_or_default();
    let r6: Vec<serde_json::Value> = json_kv(r, "ip_route6")
        .as_array()
        .cloned()
        .unwrap_or_default();

    // NetworkManager's own DHCP fallback profile must never take a NIC the drive configures
    // (primer's conf.d drop-in lists them in no-auto-default).
    if backend == "networkmanager" {
        let active = r.get("nm_active");
        assert!(
            !active.contains("Wired connection") && active.contains("primer-tap-nic1:"),
            "NetworkManager's active profiles: {active}\n{}",
            ctx()
        );
    }

    // NIC 1: static IPv4 + IPv6, MTU, nothing from router advertisements.
    let nic1 = by_mac(&links, NIC1);
    let n1 = nic1["ifname"].as_str().unwrap_or_default().to_string();
    assert_eq!(nic1["mtu"], 1480, "{}", ctx());
    assert_eq!(
        globals(&addrs, &n1),
        ["10.0.2.15/24", "2001:db8:e2::15/64"],
        "{}",
        ctx()
    );

    // The bond: active-backup, miimon 100, both NICs enslaved, MTU.
    let bond = links
        .iter()
        .find(|l| l["linkinfo"]["info_kind"] == "bond")
        .unwrap_or_else(|| panic!("no bond\n{}", ctx()));
    let bn = bond["ifname"].as_str().unwrap_or_default().to_string();
    assert_eq!(
        bond["linkinfo"]["info_data"]["mode"],
        "active-backup",
        "{}",
        ctx()
    );
    assert_eq!(bond["linkinfo"]["info_data"]["miimon"], 100, "{}", ctx());
    assert_eq!(bond["mtu"], 1450, "{}", ctx());
    for mac in [NIC2, NIC3] {
        let m = by_mac(&links, mac);
        assert_eq!(m["master"], bn.as_str(), "{mac} not in the bond\n{}", ctx());
        assert!(
            globals(&addrs, m["ifname"].as_str().unwrap_or("")).is_empty(),
            "{}",
            ctx()
        );
    }
    assert!(
        globals(&addrs, &bn).is_empty(),
        "the bond carries no address\n{}",
        ctx()
    );

    // The VLAN on the bond: id 42, MTU, its addresses.
    let vlan = links
        .iter()
        .find(|l| l["linkinfo"]["info_kind"] == "vlan")
        .unwrap_or_else(|| panic!("no vlan\n{}", ctx()));
    let vn = vlan["ifname"].as_str().unwrap_or_default().to_string();
    assert_eq!(vlan["linkinfo"]["info_data"]["id"], 42, "{}", ctx());
    assert_eq!(vlan["link"], bn.as_str(), "{}", ctx());
    assert_eq!(vlan["mtu"], 1400, "{}", ctx());
    assert_eq!(by_name(&links, &vn)["operstate"], "UP", "{}", ctx());
    assert_eq!(
        globals(&addrs, &vn),
        ["192.168.42.10/24", "fd42::10/64"],
        "{}",
        ctx()
    );

    // No other global address anywhere (restricted user networks send router advertisements:
    // they must not have been taken).
    let all: usize = links
        .iter()
        .filter_map(|l| l["ifname"].as_str())
        .map(|n| globals(&addrs, n).len())
        .sum();
    assert_eq!(all, 4, "{}", ctx());

    // Routes.
    assert!(
        has_route(&r4, "default", "10.0.2.2", &n1, None),
        "{}",
        ctx()
    );
    assert!(
        has_route(&r4, "192.0.2.0/24", "10.0.2.3", &n1, Some(50)),
        "{}",
        ctx()
    );
    assert!(
        has_route(&r4, "198.51.100.0/24", "192.168.42.1", &vn, None),
        "{}",
        ctx()
    );
    assert!(
        has_route(&r6, "default", "2001:db8:e2::1", &n1, None),
        "{}",
        ctx()
    );
    let defaults4 = r4.iter().filter(|x| x["dst"] == "default").count();
    assert_eq!(defaults4, 1, "only the drive's default route\n{}", ctx());

    // Resolver configuration: networkd's per-link state (no resolved in the guest), the
    // resolv.conf NetworkManager or primer (ifupdown, no resolvconf) wrote.
    let dns: Vec<String> = if variant == "base" {
        r.all("netif_dns").iter().map(|s| s.to_string()).collect()
    } else {
        r.all("resolv_conf").iter().map(|s| s.to_string()).collect()
    };
    let joined = dns.join("\n");
    for want in ["10.0.2.3", "2001:db8:e2::53", "e2e.test"] {
        assert!(
            joined.contains(want),
            "{want} missing from resolver config:\n{joined}\n{}",
            ctx()
        );
    }
    // The network files were written by this boot's primer run, before the backend started.
    assert!(
        !first || r.steps("changed").iter().any(|s| s.starts_with("net:")),
        "{}",
        ctx()
    );
}

#[test]
fn network_networkd() {
    network_scenario("base");
}

#[test]
fn network_ifupdown() {
    network_scenario("ifupdown");
}

#[test]
fn network_networkmanager() {
    network_scenario("nm");
}

/// Issue 11 item 7: ifupdown stanzas mapped by MAC bring the NICs up whatever the image names
/// them. Boot 1: the ifupdown guest with the network drive and none of its NICs attached, so
/// primer (live, after its bounded wait for the drive's MACs) knows no interface name and
/// renders `auto mac/MAC/=primer-mac-…` stanzas, as for an image rendered offline. Boot 2: the
/// drive gone (primer finds nothing, exit 11, changes nothing), the three NICs attached and
/// `net.ifnames=0`, so the image names them eth0..eth2 (never seen by primer): ifupdown maps
/// each by its MAC to primer's stanza and the whole network of the drive is up (the checks of
/// `network_ifupdown`: addresses, routes on "$IFACE", the bond of two mapped NICs, the VLAN).
#[test]
fn network_ifupdown_mac_mapped() {
    let (base, off, len) = variant_image("ifupdown");
    let w = Work::on("net-ifupdown-mac", &base, (off, len));
    let iso = network_drive(&w.path);
    let first = Boot {
        work: &w,
        attach: Attach::Partition,
        drive: Some(iso),
        ssh: None,
        nics: &[],
        extra: Extra::default(),
    }
    .run();
    println!(
        "{}",
        first.timing("network-ifupdown-mac, boot without NICs")
    );
    assert_unit_ok(&first, "ifupdown-mac");
    assert_eq!(first.get("primer_status"), "0", "{}", first.journal());
    let eni = w.read_guest_file("/etc/network/interfaces.d/primer");
    for mac in [NIC1, NIC2, NIC3] {
        let logical = format!("primer-mac-{}", mac.replace(':', ""));
        assert!(
            eni.contains(&format!("auto mac/{mac}/={logical}\niface {logical} inet ")),
            "{mac} not mapped by MAC:\n{eni}\n{}",
            first.journal()
        );
    }
    assert!(
        !first.journal().contains("ifupdown needs a name"),
        "{}",
        first.journal()
    );

    // Boot 2: no drive, the NICs under names primer never saw.
    sh(Command::new("qemu-io")
        .arg("-c")
        .arg(format!("write -z {off} {len}"))
        .arg(w.disk()));
    let again = Boot {
        work: &w,
        attach: Attach::None,
        drive: None,
        ssh: None,
        nics: &[NIC1, NIC2, NIC3],
        extra: Extra {
            append: "net.ifnames=0".into(),
            ..Extra::default()
        },
    }
    .run();
    println!(
        "{}",
        again.timing("network-ifupdown-mac, NICs renamed, no drive")
    );
    assert_eq!(again.get("primer_status"), "11", "{}", again.journal());
    let links: Vec<serde_json::Value> = json_kv(&again, "ip_link")
        .as_array()
        .cloned()
        .unwrap_or_default();
    for mac in [NIC1, NIC2, NIC3] {
        let name = by_mac(&links, mac)["ifname"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(
            name.starts_with("eth"),
            "{mac} is {name:?}: the image's kernel names were asked for"
        );
    }
    assert_eq!(
        w.read_guest_file("/etc/network/interfaces.d/primer"),
        eni,
        "the later boot changed primer's file"
    );
    check_network(&again, "ifupdown", false);
}

// ---- users, passwords, user-data ----

const ADMIN_PASS: &str = "e2e-Admin-pass-4711";

/// Multipart user-data: a `#!` script that appends to a marker (so a second run would show)
/// and a `#cloud-config` with write_files and runcmd.
fn users_user_data() -> String {
    let b = "==E2E-BOUNDARY==";
    format!(
        "Content-Type: multipart/mixed; boundary=\"{b}\"\nMIME-Version: 1.0\n\n\
--{b}\nContent-Type: text/x-shellscript; charset=\"us-ascii\"\n\n\
#!/bin/sh\necho \"ran $(cat /proc/sys/kernel/random/boot_id)\" >> /var/lib/e2e-script-marker\n\n\
--{b}\nContent-Type: text/cloud-config; charset=\"us-ascii\"\n\n\
#cloud-config\nwrite_files:\n  - path: /etc/e2e-written\n    content: written by user-data\n    permissions: '0640'\n    owner: debian:debian\nruncmd:\n  - [sh, -c, 'echo runcmd >> /var/lib/e2e-runcmd-marker']\n\n\
--{b}--\n"
    )
}

#[test]
fn default_user_password_sudo_and_user_data_scripts() {
    let (key, public) = keypair();
    let (base, off, len) = variant_image("users");
    let w = Work::on("users", &base, (off, len));
    let tree = w.path.join("users-tree");
    let meta = serde_json::json!({
        "uuid": INSTANCE, "hostname": FQDN, "name": "vm guest",
        "public_keys": {"k0": public}, "admin_pass": ADMIN_PASS,
    });
    common::write_drive_tree(&tree, &meta);
    for v in ["latest", "2018-08-27"] {
        fs::write(
            tree.join("openstack").join(v).join("user_data"),
            users_user_data(),
        )
        .unwrap();
    }
    let iso = w.path.join("users.iso");
    common::make_iso(&tree, &iso, common::IsoTool::Nova);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let ssh = |cmd: &str| ssh_as(key, port, "debian", cmd);
    let mut seen = None;
    let r = Boot {
        work: &w,
        attach: Attach::Partition,
        drive: Some(iso),
        ssh: Some((port, 150)),
        nics: &[],
        extra: Extra::default(),
    }
    .run_with(|_| {
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(90) {
            let o = ssh("id -un; sudo -n true && echo sudo-ok");
            if o.status.success() {
                seen = Some(String::from_utf8_lossy(&o.stdout).to_string());
                break;
            }
            std::thread::sleep(Duration::from_secs(2));
        }
        let _ = ssh("sudo -n touch /run/primer-e2e-release");
    });
    println!("{}", r.timing("users"));
    let ctx = || format!("journal:\n{}", r.journal());
    assert_unit_ok(&r, "users");
    let out = seen.unwrap_or_else(|| panic!("ssh as debian failed\n{}\n{}", ctx(), r.serial));
    assert_eq!(out, "debian\nsudo-ok\n", "{}", ctx());
    assert!(!r.journal().contains(ADMIN_PASS), "password in the journal");
    assert!(!r.serial.contains(ADMIN_PASS), "password on the console");

    // Second and third boots of the same disk, drive still attached: nothing runs again.
    for n in 2..=3 {
        let again = Boot {
            work: &w,
            attach: Attach::None,
            drive: None,
            ssh: None,
            nics: &[],
            extra: Extra::default(),
        }
        .run();
        println!("{}", again.timing(&format!("users, boot {n}")));
        assert_unit_ok(&again, &format!("users-{n}"));
        assert_eq!(again.get("primer_status"), "10", "{}", again.journal());
    }

    let marker = w.read_guest_file("/var/lib/e2e-script-marker");
    assert_eq!(
        marker.lines().count(),
        1,
        "script ran {marker:?}\n{}",
        ctx()
    );
    let runcmd = w.read_guest_file("/var/lib/e2e-runcmd-marker");
    assert_eq!(runcmd, "runcmd\n", "{}", ctx());
    assert_eq!(
        w.read_guest_file("/etc/e2e-written"),
        "written by user-data"
    );
    // The password: SHA-512 crypt in shadow, checked by an independent implementation.
    let shadow = w.read_guest_file("/etc/shadow");
    let field = shadow
        .lines()
        .find_map(|l| l.strip_prefix("debian:"))
        .and_then(|l| l.split(':').next())
        .unwrap_or_else(|| panic!("no debian in shadow"))
        .to_string();
    let salt = field
        .strip_prefix("$6$")
        .and_then(|s| s.split('$').next())
        .unwrap_or_else(|| panic!("not SHA-512 crypt: {field:?}"));
    let expect = sh(Command::new("openssl").args(["passwd", "-6", "-salt", salt, ADMIN_PASS]));
    assert_eq!(field, expect.trim());
    let sudoers = w.read_guest_file("/etc/sudoers.d/90-primer");
    assert!(
        sudoers.contains("debian ALL=(ALL) NOPASSWD:ALL"),
        "{sudoers}"
    );
}

/// Issue 16 (operators): the drive's warnings reach the journal at warning priority
/// (`journalctl -p warning -u primer`), each once; a changed step is one journal event, not
/// repeated by the step table on stdout; the status records this boot's id; and `primer status
/// --wait` from an SSH session returns with this boot's outcome (run and scripts).
#[test]
fn journal_warnings_and_status_wait() {
    let (key, public) = keypair();
    let w = Work::new("journal");
    let tree = w.path.join("warn-tree");
    // `random_seed` that is not base64: the parser warns (file and field) and goes on.
    let meta = serde_json::json!({"uuid": INSTANCE, "hostname": FQDN, "name": "vm guest",
        "public_keys": {"k0": public}, "random_seed": "%%% not base64 %%%"});
    common::write_drive_tree(&tree, &meta);
    let iso = w.path.join("warn.iso");
    common::make_iso(&tree, &iso, common::IsoTool::Nova);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut waited = None;
    let r = Boot {
        work: &w,
        attach: Attach::Partition,
        drive: Some(iso),
        ssh: Some((port, 150)),
        nics: &[],
        extra: Extra::default(),
    }
    .run_with(|_| {
        let t = Instant::now();
        // sshd may still be starting: retry the login, bounded.
        while t.elapsed() < Duration::from_secs(90) {
            let o = ssh_as(
                key,
                port,
                "root",
                "primer status --wait --timeout 120; echo \"wait-exit=$?\"",
            );
            let out = String::from_utf8_lossy(&o.stdout).to_string();
            if out.contains("wait-exit=") {
                waited = Some(out);
                break;
            }
            std::thread::sleep(Duration::from_secs(2));
        }
        let _ = ssh_as(key, port, "root", "touch /run/primer-e2e-release");
    });
    println!("{}", r.timing("journal"));
    assert_applied(&r, "journal", &[public]);
    let warnings = r.all("journal_warning");
    let seed: Vec<&&str> = warnings
        .iter()
        .filter(|l| l.contains("random_seed"))
        .collect();
    assert_eq!(seed.len(), 1, "warnings: {warnings:?}\n{}", r.journal());
    assert_eq!(
        r.journal().matches("random_seed").count(),
        1,
        "the warning once in the journal:\n{}",
        r.journal()
    );
    // ssh-keys changed: one info event, and no stdout row repeating it.
    let steps = r.all("journal_step");
    // tracing-journald logs INFO at priority 5 (notice).
    let events = steps.iter().filter(|l| **l == "5 ssh-keys").count();
    assert_eq!(events, 1, "{steps:?}");
    assert_eq!(
        r.steps("changed")
            .iter()
            .filter(|s| *s == "ssh-keys")
            .count(),
        1,
        "{}",
        r.journal()
    );
    assert_eq!(
        r.journal().matches("summary: ").count(),
        1,
        "{}",
        r.journal()
    );
    // The status names this boot.
    assert_eq!(r.get("status_boot_id"), r.get("boot_id"), "{}", r.serial);
    let out = waited.unwrap_or_else(|| panic!("no ssh session\n{}", r.serial));
    println!("[journal] status --wait over ssh:\n{out}");
    assert!(out.contains("wait-exit=0"), "{out}");
    assert!(out.contains("boot outcome: changed (exit 0)"), "{out}");
    // The drive's user-data script ran in primer-scripts.service this boot: changed, exit 0.
    assert!(out.contains("scripts:      changed (exit 0)"), "{out}");
}

/// `primer=off` on the kernel command line: the units are skipped by their condition and the
/// machine is left as the image had it, though a drive is attached.
#[test]
fn primer_off_on_the_kernel_command_line() {
    let (_, public) = keypair();
    let w = Work::new("primer-off");
    let iso = drive(&w.path, "drive", &[public]);
    let r = Boot {
        work: &w,
        attach: Attach::Partition,
        drive: Some(iso),
        ssh: None,
        nics: &[],
        extra: Extra {
            append: "primer=off".into(),
            ..Extra::default()
        },
    }
    .run();
    println!("{}", r.timing("primer-off"));
    assert_eq!(r.get("primer_condition"), "no", "{}", r.serial);
    assert_eq!(r.get("primer_active"), "inactive", "{}", r.serial);
    assert_eq!(r.get("hostname"), "image-placeholder");
    assert!(r.all("root_key").is_empty(), "{:?}", r.all("root_key"));
    assert_eq!(r.get("local_copy"), "", "{}", r.serial);
    assert_eq!(r.get("local_copy_files"), "0", "{}", r.serial);
    assert!(r.get("failed_units").trim().is_empty(), "{}", r.serial);
}

/// Issue 16: a boot without any drive ends the probe once udev's coldplug is done (its queue
/// empty for 1 s) instead of waiting out `probe.wait_seconds` (25 s in the test image), and
/// never ends it while udev still has events queued. Under TCG the guest's coldplug itself can
/// take most of the deadline (measured: udev busy ~22 s of 25 s with the host loaded), so the
/// test checks the rule from primer's own account of udev's states, not a wall-clock bound:
/// - early end: it came at most ~2 s (1 s settle + 100 ms sampling, slow guest) after udev
///   went idle, and before the deadline;
/// - no early end: udev was busy or not running for all but a few seconds of the wait.
#[test]
fn no_drive_ends_once_udev_is_idle() {
    let w = Work::new("nodrive-udev");
    let r = Boot {
        work: &w,
        attach: Attach::None,
        drive: None,
        ssh: None,
        nics: &[],
        extra: Extra::default(),
    }
    .run();
    println!("{}", r.timing("no-drive udev"));
    assert_unit_ok(&r, "no-drive udev");
    assert_eq!(r.get("primer_status"), "11", "{}", r.journal());
    let journal = r.journal();
    // "udev in /run/udev: events queued B s, idle I s, not running A s"
    let secs = |line: &str, what: &str| -> f64 {
        let at = line
            .find(what)
            .unwrap_or_else(|| panic!("{what:?} in {line}"))
            + what.len();
        line[at..]
            .trim_start()
            .split(' ')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{what:?} in {line}"))
    };
    if let Some(line) = journal
        .lines()
        .find(|l| l.contains("udev has processed every device event"))
    {
        let (busy, idle) = (secs(line, "events queued"), secs(line, ", idle"));
        let waited = secs(line, "not waiting further (");
        println!("early end after {waited:.1} s: udev busy {busy:.1} s, idle {idle:.1} s");
        assert!(waited < 25.0, "{line}");
        assert!(
            (0.5..=3.0).contains(&idle),
            "idle {idle} s before the end: {line}"
        );
    } else {
        let line = journal
            .lines()
            .find(|l| l.contains("no config drive after"))
            .unwrap_or_else(|| panic!("neither an early end nor a time-out line:\n{journal}"));
        let idle = secs(line, ", idle");
        println!("no early end (udev never settled in time): {line}");
        assert!(idle <= 3.0, "udev idle {idle} s yet no early end: {line}");
    }
    // What udev did meanwhile, for the record (guest report).
    println!(
        "udevd ready at {} us, coldplug trigger done at {} us, primer {}..{} us; settle at report: {}",
        r.get("udevd_start_us"),
        r.get("udev_trigger_us"),
        r.get("primer_start_us"),
        r.get("primer_exit_us"),
        r.get("udev_settle")
    );
}
