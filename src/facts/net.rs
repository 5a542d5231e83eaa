//! Network host facts: reads, read-only and inside the target root, what network planning
//! needs: the interfaces present (MAC -> name from `sys/class/net/*/address`, waiting a bounded
//! time for NICs the drive names when the root is the running system), which backend the
//! target uses, and primer's existing files of every backend. Never writes.
//!
//! Backend detection, first match wins (documented in the README):
//! 1. netplan installed (`usr/sbin/netplan`): netplan owns networkd/NetworkManager config;
//! 2. NetworkManager enabled (a `*.wants/NetworkManager.service` link under `etc/systemd/system`);
//! 3. systemd-networkd enabled (a `*.wants/systemd-networkd.service` link);
//! 4. ifupdown installed (`sbin/ifup`);
//! 5. NetworkManager installed (`usr/sbin/NetworkManager`);
//! 6. systemd-networkd installed (`lib/systemd/systemd-networkd`).

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use super::FileFact;
use crate::net::render::{owned, HEADER};
use crate::net::Backend;
use crate::paths::{Found, Resolver};

/// What network planning knows about the target.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetFacts {
    /// Lower-case MAC -> interface name, from `<root>/sys/class/net`.
    pub interfaces: BTreeMap<String, String>,
    /// Interface name -> kernel driver (`virtio_net`), for v2 `driver:` matches: the name of
    /// the `device/driver` link of each interface in `interfaces` that has one.
    pub drivers: BTreeMap<String, String>,
    /// The detected backend and why.
    pub detected: Option<(Backend, String)>,
    /// For each backend, primer's files (first line is the header) that exist now.
    pub owned: BTreeMap<Backend, Vec<String>>,
    /// NetworkManager is enabled (netplan then renders through it).
    pub nm_enabled: bool,
    /// ifupdown: a resolvconf program is installed (it applies `dns-*` lines).
    pub resolvconf: bool,
    /// `/etc/resolv.conf` is a symlink (managed by resolved, resolvconf, NetworkManager...).
    pub resolv_conf_symlink: bool,
}

/// How long a live run waits for the NICs the drive names to appear (and, for ifupdown, to be
/// renamed by udev, which may still be loading virtio_net when primer starts): the probe's
/// default deadline for late devices (`probe.wait_seconds` sets both).
pub const DEFAULT_WAIT: Duration = Duration::from_secs(3);

/// Largest network file read for comparison.
const MAX_FILE: u64 = 1 << 20;

/// Reads the network facts. On a live system, `wait` bounds the wait for NICs the drive names
/// that are not there yet (or not yet renamed by udev). Returns the facts and the existing files
/// (by root-relative path) that the planner compares rendered files against.
pub fn read_net_facts(
    root: &Path,
    wanted_macs: &[String],
    live: bool,
    wait: Duration,
) -> (NetFacts, BTreeMap<String, FileFact>) {
    read_net_facts_in(
        &Resolver::new(root),
        wanted_macs,
        live,
        wait,
        &mut super::Inputs::default(),
    )
}

/// `read_net_facts` through the host facts' resolver (its memo shared with the other facts).
pub(crate) fn read_net_facts_in(
    root: &Resolver,
    wanted_macs: &[String],
    live: bool,
    wait: Duration,
    inp: &mut super::Inputs,
) -> (NetFacts, BTreeMap<String, FileFact>) {
    let mut facts = NetFacts {
        interfaces: interfaces_in(root),
        ..Default::default()
    };
    // What detection and the owned files rest on (`HostFacts::inputs`): the unit directories'
    // entries, the tools looked for, `etc` (whether resolv.conf is a link), each backend's
    // directory. NICs are sysfs attributes, which no file metadata vouches for (sysfs inodes
    // are made anew each boot): kept by value below (`Inputs::volatile`).
    for p in TOOLS {
        inp.paths.insert(p.to_string());
    }
    for d in ["etc", "etc/systemd/system"] {
        inp.paths.insert(d.into());
        inp.listed.insert(d.into());
    }
    inp.links.insert("etc/resolv.conf".into());
    if let Ok(dir) = root.resolve("etc/systemd/system") {
        if let Ok(rd) = fs::read_dir(dir) {
            for e in rd.flatten().take(1000) {
                let n = e.file_name().to_string_lossy().into_owned();
                if n.ends_with(".wants") {
                    let d = format!("etc/systemd/system/{n}");
                    inp.paths.insert(d.clone());
                    inp.listed.insert(d);
                }
            }
        }
    }
    let wants = |svc: &str| enabled(root, svc);
    // Resolution already looked at the last component: a second lookup only for a symlink
    // (which `Found::Unknown` stands for) or a failed lookup.
    let exists = |p: &str| match root.resolve_found(p) {
        Ok((_, Found::Dir | Found::Other)) => true,
        Ok((h, Found::Unknown)) => fs::symlink_metadata(h).is_ok(),
        Ok((_, Found::Missing)) | Err(_) => false,
    };
    facts.nm_enabled = wants("NetworkManager.service");
    facts.detected = if exists("usr/sbin/netplan") || exists("sbin/netplan") {
        Some((Backend::Netplan, "netplan is installed".into()))
    } else if facts.nm_enabled {
        Some((Backend::NetworkManager, "NetworkManager is enabled".into()))
    } else if wants("systemd-networkd.service") {
        Some((Backend::Networkd, "systemd-networkd is enabled".into()))
    } else if exists("sbin/ifup") || exists("usr/sbin/ifup") {
        Some((Backend::Eni, "ifupdown is installed".into()))
    } else if exists("usr/sbin/NetworkManager") {
        Some((
            Backend::NetworkManager,
            "NetworkManager is installed".into(),
        ))
    } else if exists("lib/systemd/systemd-networkd") || exists("usr/lib/systemd/systemd-networkd") {
        Some((Backend::Networkd, "systemd-networkd is installed".into()))
    } else {
        None
    };
    // A NIC the drive names may appear after primer starts: on a live run wait for it, up to the
    // deadline, then render anyway (networkd, NetworkManager and netplan match by MAC; ifupdown
    // reports the links it could not name). A NIC that is present is also waited for until udev
    // has given it its final name: a kernel name (eth0) seen before the rename would otherwise
    // end up in the rendered files and match nothing.
    let wanted = wanted_macs;
    if live && !wanted.is_empty() {
        let start = Instant::now();
        // Started on the first round that has to wait: a wait that ends at once stays silent.
        let mut progress = None;
        loop {
            let missing: Vec<&String> = wanted
                .iter()
                .filter(|m| !facts.interfaces.contains_key(*m))
                .collect();
            let pending = unsettled(root, &facts.interfaces, wanted);
            if missing.is_empty() && pending.is_empty() {
                tracing::debug!("network: NICs present after {:?}", start.elapsed());
                break;
            }
            if start.elapsed() >= wait {
                if !missing.is_empty() {
                    tracing::warn!(
                        "network: after {:?}, {} NIC(s) named by the drive are not present \
                         (their configuration is written anyway, matched by MAC): {}",
                        wait,
                        missing.len(),
                        missing
                            .iter()
                            .map(|s| s.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                }
                if !pending.is_empty() {
                    // ifupdown names interfaces: a kernel name udev replaces later matches
                    // nothing (the other backends match by MAC).
                    tracing::warn!(
                        "network: after {:?}, udev has not finished naming {} NIC(s) named by \
                         the drive (their current names are used): {}",
                        wait,
                        pending.len(),
                        pending.join(", ")
                    );
                }
                break;
            }
            progress.get_or_insert_with(|| {
                crate::progress::Progress::start(format!(
                    "network: waiting for {} NIC(s) named by the drive",
                    wanted.len()
                ))
            });
            std::thread::sleep(Duration::from_millis(50));
            // sysfs and udev's database change while NICs appear and are renamed: what the
            // memo learnt of them (an interface missing) must not outlive the round.
            root.forget_all();
            facts.interfaces = interfaces_in(root);
        }
    }
    facts.drivers = drivers_in(root, &facts.interfaces);
    inp.volatile.interfaces = facts.interfaces.clone();
    inp.volatile.drivers = facts.drivers.clone();
    inp.volatile.macs = wanted_macs.to_vec();
    facts.resolvconf = exists("sbin/resolvconf") || exists("usr/sbin/resolvconf");
    // Through the memo (which never holds a symlink): a missing or regular resolv.conf is
    // remembered, so reading it below costs no second lookup.
    facts.resolv_conf_symlink = root
        .resolve("etc")
        .ok()
        .map(|etc| etc.join("resolv.conf"))
        .is_some_and(|h| {
            root.kind(&h).is_none()
                && fs::symlink_metadata(&h).is_ok_and(|m| m.file_type().is_symlink())
        });

    let mut files = BTreeMap::new();
    for b in Backend::ALL {
        let o = owned(b);
        let mut mine = Vec::new();
        let mut candidates: Vec<String> = o.extra.iter().map(|s| s.to_string()).collect();
        inp.paths.insert(o.dir.to_string());
        inp.listed.insert(o.dir.to_string());
        if let Some((_, rd)) = super::read::list_dir(root, o.dir) {
            for e in rd.flatten().take(10_000) {
                let n = e.file_name().to_string_lossy().into_owned();
                if n.starts_with(o.prefix) {
                    candidates.push(format!("{}/{n}", o.dir));
                }
            }
        }
        crate::sort::sort(&mut candidates);
        inp.paths.extend(candidates.iter().cloned());
        for rel in candidates {
            if let Some(f) = read_file(root, &rel) {
                if f.content.starts_with(HEADER.as_bytes()) {
                    mine.push(rel.clone());
                }
                files.insert(rel, f);
            }
        }
        facts.owned.insert(b, mine);
    }
    inp.paths.insert("etc/network/interfaces".into());
    if let Some(f) = read_file(root, "etc/network/interfaces") {
        files.insert("etc/network/interfaces".into(), f);
    }
    (facts, files)
}

/// The tools whose presence decides the detected backend and resolvconf.
const TOOLS: [&str; 9] = [
    "usr/sbin/netplan",
    "sbin/netplan",
    "sbin/ifup",
    "usr/sbin/ifup",
    "usr/sbin/NetworkManager",
    "lib/systemd/systemd-networkd",
    "usr/lib/systemd/systemd-networkd",
    "sbin/resolvconf",
    "usr/sbin/resolvconf",
];

/// Interfaces under `<root>/sys/class/net`: lower-case MAC -> name (loopback and interfaces
/// without an Ethernet address are left out; a MAC seen twice keeps the first name in order).
pub fn read_interfaces(root: &Path) -> BTreeMap<String, String> {
    interfaces_in(&Resolver::new(root))
}

/// The interfaces as [`read_net_facts_in`] reads them (for `facts::read_volatile`).
pub(crate) fn interfaces_now(root: &Resolver) -> BTreeMap<String, String> {
    interfaces_in(root)
}

/// The drivers as [`read_net_facts_in`] reads them (for `facts::read_volatile`).
pub(crate) fn drivers_now(
    root: &Resolver,
    interfaces: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    drivers_in(root, interfaces)
}

/// Whether udev has given the NICs `wanted` names their final names: the condition that ends a
/// live run's wait (for `facts::read_volatile`).
pub(crate) fn names_settled(
    root: &Resolver,
    ifaces: &BTreeMap<String, String>,
    wanted: &[String],
) -> bool {
    unsettled(root, ifaces, wanted).is_empty()
}

fn interfaces_in(root: &Resolver) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let Some((dir, rd)) = super::read::list_dir(root, "sys/class/net") else {
        return out;
    };
    let mut names: Vec<String> = rd
        .flatten()
        .take(4096)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    crate::sort::sort(&mut names);
    for n in names {
        if n == "lo" {
            continue;
        }
        // A bond or VLAN shares its MAC with a NIC: only devices backed by hardware (with a
        // `device` link) name a NIC; on a fake sysfs tree without it, take what is there.
        let base = dir.join(&n);
        let is_virtual = base.join("bonding").exists()
            || fs::read_to_string(base.join("uevent")).is_ok_and(|u| u.contains("DEVTYPE="));
        if is_virtual {
            continue;
        }
        // An enslaved NIC shows its bond's MAC; its own is kept in bonding_slave/perm_hwaddr.
        let Ok(addr) = fs::read_to_string(base.join("bonding_slave/perm_hwaddr"))
            .or_else(|_| fs::read_to_string(base.join("address")))
        else {
            continue;
        };
        if let Some(mac) = crate::model::network::normalize_mac(addr.trim()) {
            if mac != "00:00:00:00:00:00" {
                out.entry(mac).or_insert(n);
            }
        }
    }
    out
}

/// Longest driver name kept (the kernel's are far shorter; a longer one is not matched).
const DRIVER_MAX: usize = 64;

/// The kernel driver of each interface: the last component of the `device/driver` link's
/// target under `<root>/sys/class/net/NAME` (read, never followed outside the root). Interfaces
/// without one (virtual, or a fake sysfs tree) have none; a name that is not one line of at
/// most 64 bytes is left out.
pub fn read_drivers(
    root: &Path,
    interfaces: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    drivers_in(&Resolver::new(root), interfaces)
}

fn drivers_in(root: &Resolver, interfaces: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let Ok(dir) = root.resolve("sys/class/net") else {
        return out;
    };
    for name in interfaces.values() {
        let Ok(target) = fs::read_link(dir.join(name).join("device/driver")) else {
            continue;
        };
        let Some(d) = target.file_name().and_then(|d| d.to_str()) else {
            continue;
        };
        if !d.is_empty() && d.len() <= DRIVER_MAX && crate::model::grammar::line_safe(d).is_ok() {
            out.insert(name.clone(), d.to_string());
        }
    }
    out
}

/// The names (of the NICs `wanted` names that are present) udev has not made final yet; empty
/// off a live system with udevd running. On a live system an interface name is final once udev
/// has written its database entry and, unless predictable names are switched off, the kernel's
/// `ethN` name (`name_assign_type` 1, "enumerated") has been replaced ([`name_final`]).
fn unsettled<'a>(
    root: &Resolver,
    ifaces: &'a BTreeMap<String, String>,
    wanted: &[String],
) -> Vec<&'a str> {
    let Ok(run) = root.resolve("run/udev") else {
        return Vec::new();
    };
    if !run.join("control").exists() {
        return Vec::new();
    }
    let keeps_kernel_names = kernel_names_kept(root);
    wanted
        .iter()
        .filter_map(|m| ifaces.get(m))
        .filter(|name| {
            let attr = |a: &str| {
                root.resolve(&format!("sys/class/net/{name}/{a}"))
                    .ok()
                    .and_then(|p| fs::read_to_string(p).ok())
                    .map(|s| s.trim().to_string())
            };
            let entry = |ifindex: &str| {
                super::read::read_file_capped(
                    root,
                    &format!("run/udev/data/n{ifindex}"),
                    UDEV_DB_MAX,
                )
                .map(|f| f.content)
            };
            !name_final(attr, entry, keeps_kernel_names)
        })
        .map(String::as_str)
        .collect()
}

/// Largest udev database entry read (a NIC's is a few hundred bytes).
const UDEV_DB_MAX: u64 = 64 << 10;

/// Whether one NIC's name is final, from its sysfs attributes (`attr`, read now under the name)
/// and udev's database entry for an ifindex (`entry`). udev renames NICs in parallel workers
/// while this runs, so the reads are ordered for a rename between any two of them to show:
/// 1. `name_assign_type` first: the kernel's enumerated `ethN` (1) is not final (unless
///    predictable names are off). It reads as an error for devices whose naming is unknown
///    (older kernels name Ethernet devices so): the checks below then decide alone.
/// 2. The ifindex, then udev's entry for it: udev writes it once the event is processed, after
///    the rename. Newer systemd also writes it earlier: just before renaming, marked
///    `ID_RENAMING=1`, and while an event for a device that already has an entry (one left by
///    the initramfs's udev, say) is processed, marked `ID_PROCESSING=1` (networkd waits for
///    both to go too). An entry left by an earlier event on an older systemd, for a NIC whose
///    naming the kernel does not report, cannot be told from a final one.
/// 3. The ifindex again, under the same name: a rename after step 1 has made the name vanish
///    (or name another device). Without this re-read, a rename between reading the ifindex and
///    reading `name_assign_type` made the vanished attribute look like "naming unknown" and
///    the kernel name (eth0) final: seen in the ifupdown guest under TCG, where eth0 was
///    rendered into the interfaces file and udev's enp0s1 matched nothing.
fn name_final(
    mut attr: impl FnMut(&str) -> Option<String>,
    entry: impl Fn(&str) -> Option<Vec<u8>>,
    keeps_kernel_names: bool,
) -> bool {
    if !keeps_kernel_names && attr("name_assign_type").as_deref() == Some("1") {
        return false;
    }
    let Some(ifindex) = attr("ifindex") else {
        return false;
    };
    let Some(db) = entry(&ifindex) else {
        return false;
    };
    if db
        .split(|&b| b == b'\n')
        .any(|l| l == b"E:ID_RENAMING=1" || l == b"E:ID_PROCESSING=1")
    {
        return false;
    }
    attr("ifindex").as_deref() == Some(ifindex.as_str())
}

/// Predictable interface names are switched off (`net.ifnames=0`, or the default `.link` or
/// the udev rule masked): udev keeps the kernel's `ethN` names.
fn kernel_names_kept(root: &Resolver) -> bool {
    let cmdline = root
        .resolve("proc/cmdline")
        .ok()
        .and_then(|p| fs::read_to_string(p).ok())
        .unwrap_or_default();
    // The link itself is read, not followed: resolve its directory only.
    let masked = |dir: &str, file: &str| {
        root.resolve(dir)
            .ok()
            .and_then(|h| fs::read_link(h.join(file)).ok())
            .is_some_and(|t| t == Path::new("/dev/null"))
    };
    cmdline.split_whitespace().any(|w| w == "net.ifnames=0")
        || masked("etc/systemd/network", "99-default.link")
        || masked("etc/udev/rules.d", "80-net-setup-link.rules")
}

/// Whether a unit is enabled: a link named `unit` in some `*.wants` directory under
/// `etc/systemd/system`, and the unit not masked (linked to /dev/null).
fn enabled(root: &Resolver, unit: &str) -> bool {
    // Missing (a bare image): no link to read, nothing to list.
    let Ok((dir, Found::Dir | Found::Unknown)) = root.resolve_found("etc/systemd/system") else {
        return false;
    };
    if fs::read_link(dir.join(unit)).is_ok_and(|t| t == Path::new("/dev/null")) {
        return false;
    }
    let Ok(rd) = fs::read_dir(dir) else {
        return false;
    };
    rd.flatten().take(1000).any(|e| {
        e.file_name().to_string_lossy().ends_with(".wants")
            && fs::symlink_metadata(e.path().join(unit)).is_ok()
    })
}

fn read_file(root: &Resolver, rel: &str) -> Option<FileFact> {
    super::read_file_capped(root, rel, MAX_FILE)
}

// Symlinks: these tests run where they exist.
#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn detect(root: &Path) -> Option<Backend> {
        read_net_facts(root, &[], false, Duration::ZERO)
            .0
            .detected
            .map(|(b, _)| b)
    }

    #[test]
    fn detection_order_and_masking() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        assert_eq!(detect(r), None);
        fs::create_dir_all(r.join("usr/lib/systemd")).unwrap();
        fs::write(r.join("usr/lib/systemd/systemd-networkd"), "").unwrap();
        assert_eq!(detect(r), Some(Backend::Networkd), "installed networkd");
        fs::create_dir_all(r.join("usr/sbin")).unwrap();
        fs::write(r.join("usr/sbin/NetworkManager"), "").unwrap();
        assert_eq!(detect(r), Some(Backend::NetworkManager), "installed NM");
        fs::write(r.join("usr/sbin/ifup"), "").unwrap();
        assert_eq!(detect(r), Some(Backend::Eni), "installed ifupdown");
        let wants = r.join("etc/systemd/system/multi-user.target.wants");
        fs::create_dir_all(&wants).unwrap();
        symlink("/x", wants.join("systemd-networkd.service")).unwrap();
        assert_eq!(detect(r), Some(Backend::Networkd), "enabled networkd");
        // A masked unit is not enabled, whatever links name it.
        symlink(
            "/dev/null",
            r.join("etc/systemd/system/systemd-networkd.service"),
        )
        .unwrap();
        assert_eq!(detect(r), Some(Backend::Eni));
        symlink("/x", wants.join("NetworkManager.service")).unwrap();
        assert_eq!(detect(r), Some(Backend::NetworkManager), "enabled NM");
        fs::write(r.join("usr/sbin/netplan"), "").unwrap();
        assert_eq!(detect(r), Some(Backend::Netplan), "netplan first");
    }

    #[test]
    fn a_name_is_settled_only_once_udev_has_it_and_it_still_exists() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        fs::create_dir_all(r.join("run/udev/data")).unwrap();
        fs::write(r.join("run/udev/control"), "").unwrap();
        let mac = "52:54:00:aa:00:01".to_string();
        let ifaces: BTreeMap<String, String> = [(mac.clone(), "eth0".to_string())].into();
        // eth0 was read, then renamed: it is gone from sysfs.
        assert!(!names_settled(
            &Resolver::new(r),
            &ifaces,
            std::slice::from_ref(&mac)
        ));
        // Present with the kernel's enumerated name: not final yet.
        let dev = r.join("sys/class/net/eth0");
        fs::create_dir_all(&dev).unwrap();
        fs::write(dev.join("ifindex"), "2\n").unwrap();
        fs::write(dev.join("name_assign_type"), "1\n").unwrap();
        fs::write(r.join("run/udev/data/n2"), "").unwrap();
        assert!(!names_settled(
            &Resolver::new(r),
            &ifaces,
            std::slice::from_ref(&mac)
        ));
        // Renamed by udev (name_assign_type 4) and in udev's database: final.
        fs::write(dev.join("name_assign_type"), "4\n").unwrap();
        assert!(names_settled(
            &Resolver::new(r),
            &ifaces,
            std::slice::from_ref(&mac)
        ));
        // Not yet in udev's database: not final.
        fs::remove_file(r.join("run/udev/data/n2")).unwrap();
        assert!(!names_settled(
            &Resolver::new(r),
            &ifaces,
            std::slice::from_ref(&mac)
        ));
    }

    /// udev renames a NIC while primer reads it: whichever read the rename falls before, the
    /// name read is never taken as final. Before the rename: the kernel's name, no database
    /// entry; after: the name is gone from sysfs, udev's entry exists. Both kinds of kernel:
    /// `name_assign_type` 1 (enumerated) and unreadable (naming unknown, older kernels).
    #[test]
    fn a_rename_between_any_two_reads_never_looks_final() {
        use std::cell::Cell;
        for enumerated in [true, false] {
            for rename_before in 0..=4 {
                let reads = Cell::new(0);
                let renamed = || {
                    let n = reads.get();
                    reads.set(n + 1);
                    n >= rename_before
                };
                let attr = |a: &str| {
                    if renamed() {
                        return None;
                    }
                    match a {
                        "ifindex" => Some("2".to_string()),
                        "name_assign_type" if enumerated => Some("1".to_string()),
                        _ => None,
                    }
                };
                let entry = |i: &str| {
                    assert_eq!(i, "2");
                    renamed().then(|| b"I:1\nE:ID_NET_NAME=enp0s1\n".to_vec())
                };
                assert!(
                    !name_final(attr, entry, false),
                    "enumerated {enumerated}, renamed before read {rename_before}"
                );
            }
        }
        // The old order (ifindex, entry, then name_assign_type) took this for final: the
        // ifindex read under eth0, the rename, the entry, name_assign_type gone.
        let reads = Cell::new(0);
        let attr = |a: &str| {
            reads.set(reads.get() + 1);
            (a == "ifindex" && reads.get() == 1).then(|| "2".to_string())
        };
        assert!(!name_final(attr, |_| Some(Vec::new()), false));
    }

    #[test]
    fn a_name_is_final_once_renamed_and_recorded_not_while_renaming() {
        let attr = |a: &str| match a {
            "ifindex" => Some("3".to_string()),
            "name_assign_type" => Some("4".to_string()),
            _ => None,
        };
        let db = |t: &'static [u8]| move |_: &str| Some(t.to_vec());
        assert!(name_final(attr, db(b"I:1\nE:ID_NET_NAME=enp0s2\n"), false));
        // Newer systemd records the entry just before renaming, marked; and marks an entry
        // being processed again (a NIC named by the initramfs's udev, renamed by the root's).
        assert!(!name_final(attr, db(b"I:1\nE:ID_RENAMING=1\n"), false));
        assert!(!name_final(
            attr,
            db(b"I:1\nE:ID_PROCESSING=1\nE:ID_NET_NAME=enp0s1\n"),
            false
        ));
        assert!(!name_final(attr, |_| None, false));
        // Kernel names kept (net.ifnames=0): the enumerated name is final once recorded.
        let kernel = |a: &str| match a {
            "ifindex" => Some("3".to_string()),
            "name_assign_type" => Some("1".to_string()),
            _ => None,
        };
        assert!(name_final(kernel, db(b"I:1\n"), true));
        assert!(!name_final(kernel, db(b"I:1\n"), false));
    }

    #[test]
    fn interfaces_from_fake_sysfs() {
        let t = tempfile::tempdir().unwrap();
        let net = t.path().join("sys/class/net");
        for (n, mac, extra) in [
            ("lo", "00:00:00:00:00:00", ""),
            ("ens3", "52:54:00:AA:00:01", ""),
            ("bond0", "52:54:00:aa:00:02", "DEVTYPE=bond\n"),
            ("ens4", "52:54:00:aa:00:02", ""),
        ] {
            fs::create_dir_all(net.join(n)).unwrap();
            fs::write(net.join(n).join("address"), format!("{mac}\n")).unwrap();
            fs::write(
                net.join(n).join("uevent"),
                format!("INTERFACE={n}\n{extra}"),
            )
            .unwrap();
        }
        // An enslaved NIC shows the bond's MAC; its own is the permanent one.
        fs::create_dir_all(net.join("ens5/bonding_slave")).unwrap();
        fs::write(net.join("ens5/address"), "52:54:00:aa:00:02\n").unwrap();
        fs::write(
            net.join("ens5/bonding_slave/perm_hwaddr"),
            "52:54:00:aa:00:03\n",
        )
        .unwrap();
        // ens3's driver is a link's last component; ens4 has none.
        fs::create_dir_all(net.join("ens3/device")).unwrap();
        symlink(
            "../../../bus/virtio/drivers/virtio_net",
            net.join("ens3/device/driver"),
        )
        .unwrap();
        let i = read_interfaces(t.path());
        let d = read_drivers(t.path(), &i);
        assert_eq!(
            d.into_iter().collect::<Vec<_>>(),
            [("ens3".to_string(), "virtio_net".to_string())]
        );
        assert_eq!(
            i.into_iter().collect::<Vec<_>>(),
            [
                ("52:54:00:aa:00:01".to_string(), "ens3".to_string()),
                ("52:54:00:aa:00:02".to_string(), "ens4".to_string()),
                ("52:54:00:aa:00:03".to_string(), "ens5".to_string()),
            ]
        );
    }
}
