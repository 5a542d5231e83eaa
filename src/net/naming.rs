//! Interface naming: decides the OS name of every link from the source's `name`, the target's
//! interfaces (MAC -> name, read from `<root>/sys/class/net/*/address` by `host`) and, for
//! virtual links, a generated name. Pure. A physical link with no known name stays unnamed:
//! networkd, NetworkManager and netplan match it by MAC; ifupdown cannot and says so.

use std::collections::{BTreeMap, BTreeSet};

use crate::model::network::{glob_match, valid_ifname, Link, LinkKind, NetworkConfig};

/// The OS name chosen for one link.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LinkName {
    /// `None`: a physical link matched by MAC only (its current name is not known).
    pub name: Option<String>,
    /// The source asks for this name on a NIC matched by MAC: renderers rename (networkd
    /// `.link`, netplan `set-name`) where they can.
    pub rename: bool,
}

/// Names for every link of a config, by link id.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Names {
    pub links: BTreeMap<String, LinkName>,
    /// Physical links whose MAC is not among the target's interfaces (yet).
    pub missing_macs: Vec<String>,
    /// The target's interfaces these names were chosen against, sorted by name: what
    /// NetworkManager and ifupdown resolve name globs and driver matches against
    /// ([`expand_matches`]).
    pub host: Vec<HostNic>,
}

/// One interface of the target, as the host facts read it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HostNic {
    pub name: String,
    /// Lower-case `aa:bb:cc:dd:ee:ff`.
    pub mac: String,
    /// The kernel driver (`virtio_net`, `ixgbe`), when known.
    pub driver: Option<String>,
}

/// The target's interfaces from the host facts' MAC -> name map and name -> driver map,
/// sorted by name (the stable order of glob matches).
pub fn host_nics(
    macs: &BTreeMap<String, String>,
    drivers: &BTreeMap<String, String>,
) -> Vec<HostNic> {
    let mut v: Vec<HostNic> = macs
        .iter()
        .map(|(mac, name)| HostNic {
            name: name.clone(),
            mac: mac.clone(),
            driver: drivers.get(name).cloned(),
        })
        .collect();
    crate::sort::sort_by(&mut v, |a, b| a.name.cmp(&b.name));
    v
}

impl Names {
    pub fn name(&self, id: &str) -> Option<&str> {
        self.links.get(id).and_then(|n| n.name.as_deref())
    }
    pub fn rename(&self, id: &str) -> bool {
        self.links.get(id).is_some_and(|n| n.rename)
    }
}

/// Chooses names. `host` maps lower-case MAC -> current interface name on the target (drivers
/// unknown: see [`assign_names_with_drivers`]).
pub fn assign_names(c: &NetworkConfig, host: &BTreeMap<String, String>) -> Names {
    assign_names_with_drivers(c, host, &BTreeMap::new())
}

/// [`assign_names`], knowing each interface's driver (name -> driver) for `driver:` matches.
pub fn assign_names_with_drivers(
    c: &NetworkConfig,
    host: &BTreeMap<String, String>,
    drivers: &BTreeMap<String, String>,
) -> Names {
    let mut names = Names {
        host: host_nics(host, drivers),
        ..Names::default()
    };
    let mut used: BTreeSet<String> = crate::sort::set(host.values().cloned());
    // Physical links first: their names are given, not chosen.
    for l in &c.links {
        if !matches!(l.kind, LinkKind::Physical) {
            continue;
        }
        // A target's interface name that primer could not write safely is treated as
        // unknown (the link is matched by MAC).
        let current = l
            .mac
            .as_ref()
            .and_then(|m| host.get(m))
            .filter(|n| valid_ifname(n))
            // A NIC whose name the link's glob refuses is not the link's.
            .filter(|n| l.match_name.as_deref().is_none_or(|g| glob_match(g, n)));
        if l.mac.is_some() && current.is_none() {
            names.missing_macs.push(l.id.clone());
        }
        let n = match (&l.name, current) {
            (Some(want), cur) => LinkName {
                name: Some(want.clone()),
                rename: l.mac.is_some() && cur != Some(want),
            },
            (None, Some(cur)) => LinkName {
                name: Some(cur.clone()),
                rename: false,
            },
            (None, None) => LinkName::default(),
        };
        if let Some(x) = &n.name {
            used.insert(x.clone());
        }
        names.links.insert(l.id.clone(), n);
    }
    // Bonds and bridges before VLANs: a VLAN's generated name derives from its parent's.
    for pass in 0..2 {
        for l in &c.links {
            let is_vlan = matches!(l.kind, LinkKind::Vlan { .. });
            if matches!(l.kind, LinkKind::Physical) || (pass == 0) == is_vlan {
                continue;
            }
            let pick = |cand: Option<String>, used: &mut BTreeSet<String>| {
                cand.filter(|c| valid_ifname(c) && !used.contains(c))
                    .inspect(|c| {
                        used.insert(c.clone());
                    })
            };
            let mut chosen = pick(l.name.clone(), &mut used);
            if chosen.is_none() {
                if let LinkKind::Vlan { parent, vlan_id } = &l.kind {
                    // `parent.vid`, as ifupdown and cloud-init name VLANs.
                    let p = names.name(parent).map(str::to_string);
                    chosen = pick(p.map(|p| format!("{p}.{vlan_id}")), &mut used);
                }
            }
            if chosen.is_none() {
                chosen = pick(Some(l.id.clone()), &mut used);
            }
            if chosen.is_none() {
                let stem = match &l.kind {
                    LinkKind::Bond { .. } => "bond".to_string(),
                    LinkKind::Bridge { .. } => "br".to_string(),
                    LinkKind::Vlan { vlan_id, .. } => format!("vlan{vlan_id}-"),
                    LinkKind::Physical => "eth".to_string(),
                };
                let mut i = 0usize;
                while chosen.is_none() {
                    chosen = pick(Some(format!("{stem}{i}")), &mut used);
                    i += 1;
                }
            }
            names.links.insert(
                l.id.clone(),
                LinkName {
                    name: chosen,
                    rename: false,
                },
            );
        }
    }
    names
}

/// [`assign_names_with_drivers`] against an interface list (as [`Names::host`] holds it).
pub fn assign_names_host(c: &NetworkConfig, host: &[HostNic]) -> Names {
    let macs: BTreeMap<String, String> =
        crate::sort::map(host.iter().map(|h| (h.mac.clone(), h.name.clone())));
    let drivers: BTreeMap<String, String> = crate::sort::map(
        host.iter()
            .filter_map(|h| Some((h.name.clone(), h.driver.clone()?))),
    );
    assign_names_with_drivers(c, &macs, &drivers)
}

/// Most links a config may grow to when glob matches are resolved (each matching NIC becomes
/// one link): bounds the renderers' work whatever the number of NICs times globs.
pub const EXPANDED_LINKS_MAX: usize = 1024;

/// Resolves the match rules (name glob, driver glob, with the MAC when given) of every physical
/// link against the target's interfaces, for the backends without match rules of their own
/// (NetworkManager, ifupdown): a link matching one NIC becomes that NIC (matched by its MAC
/// from now on), one matching several becomes one link per NIC in name order (ids
/// `ID#NAME`, every bond or bridge listing it lists them all, a VLAN on it takes the first),
/// one matching none is left out with a warning (and so is a VLAN on it). Links without
/// match rules are unchanged. Pure; linear in links times NICs times the (capped) glob cost.
pub fn expand_matches(c: &NetworkConfig, host: &[HostNic]) -> (NetworkConfig, Vec<String>) {
    let mut warnings = Vec::new();
    if !c.links.iter().any(Link::has_match_rules) {
        return (c.clone(), warnings);
    }
    let mut out = NetworkConfig {
        links: Vec::new(),
        dns: c.dns.clone(),
    };
    // Link id -> the ids it became (empty: left out).
    let mut became: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for l in &c.links {
        if !l.has_match_rules() {
            out.links.push(l.clone());
            continue;
        }
        let hits: Vec<&HostNic> = host
            .iter()
            .filter(|h| l.mac.as_ref().is_none_or(|m| *m == h.mac))
            .filter(|h| {
                l.match_name
                    .as_deref()
                    .is_none_or(|g| glob_match(g, &h.name))
            })
            .filter(|h| {
                l.match_driver
                    .as_deref()
                    .is_none_or(|g| h.driver.as_deref().is_some_and(|d| glob_match(g, d)))
            })
            .collect();
        let what = describe_match(l);
        if hits.is_empty() {
            warnings.push(format!(
                "link {:?}: {what} matches no interface on the target; left out",
                l.id
            ));
            became.insert(&l.id, Vec::new());
            continue;
        }
        let hits = if l.name.is_some() && hits.len() > 1 {
            warnings.push(format!(
                "link {:?}: {what} matches {} interfaces but set-name names one; only {:?} is configured",
                l.id,
                hits.len(),
                hits[0].name
            ));
            &hits[..1]
        } else {
            &hits[..]
        };
        let mut ids = Vec::new();
        for (k, h) in hits.iter().enumerate() {
            if out.links.len() >= EXPANDED_LINKS_MAX {
                warnings.push(format!(
                    "link {:?}: more than {EXPANDED_LINKS_MAX} links after resolving matches; the other matches are left out",
                    l.id
                ));
                break;
            }
            let mut x = l.clone();
            if k > 0 {
                x.id = format!("{}#{}", l.id, h.name);
            }
            x.mac = Some(h.mac.clone());
            x.match_name = None;
            x.match_driver = None;
            ids.push(x.id.clone());
            out.links.push(x);
        }
        became.insert(&l.id, ids);
    }
    // References to resolved links: members become every match, a VLAN parent the first;
    // a VLAN whose parent is gone goes too (and a VLAN on it, in turn).
    for l in &mut out.links {
        match &mut l.kind {
            LinkKind::Bond { members, params } => {
                *members = expand_refs(members, &became);
                if let Some(p) = &params.primary {
                    if let Some(v) = became.get(p.as_str()) {
                        params.primary = v.first().cloned();
                    }
                }
            }
            LinkKind::Bridge { members, .. } => *members = expand_refs(members, &became),
            LinkKind::Vlan { parent, .. } => {
                if let Some(v) = became.get(parent.as_str()) {
                    if v.len() > 1 {
                        warnings.push(format!(
                            "vlan {:?}: its parent {parent:?} matches {} interfaces; the VLAN is on {:?}",
                            l.id,
                            v.len(),
                            v[0]
                        ));
                    }
                    // Empty: the VLAN is removed below.
                    *parent = v.first().cloned().unwrap_or_default();
                }
            }
            LinkKind::Physical => {}
        }
    }
    loop {
        let gone: Vec<String> = out
            .links
            .iter()
            .filter(|l| match &l.kind {
                LinkKind::Vlan { parent, .. } => out.link(parent).is_none(),
                _ => false,
            })
            .map(|l| l.id.clone())
            .collect();
        if gone.is_empty() {
            break;
        }
        for g in &gone {
            warnings.push(format!(
                "vlan {g:?}: its parent is not configured; left out"
            ));
        }
        out.links.retain(|l| !gone.contains(&l.id));
    }
    (out, warnings)
}

fn expand_refs(ids: &[String], became: &BTreeMap<&str, Vec<String>>) -> Vec<String> {
    ids.iter()
        .flat_map(|m| match became.get(m.as_str()) {
            Some(v) => v.clone(),
            None => vec![m.clone()],
        })
        .collect()
}

/// `name glob "eth*", driver "virtio*", MAC …` for warnings (globs passed `check_glob`, so
/// they print as they are).
pub fn describe_match(l: &Link) -> String {
    let mut parts = Vec::new();
    if let Some(g) = &l.match_name {
        parts.push(format!("name {g:?}"));
    }
    if let Some(g) = &l.match_driver {
        parts.push(format!("driver {g:?}"));
    }
    if let Some(m) = &l.mac {
        parts.push(format!("MAC {m}"));
    }
    format!("match ({})", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::network::{BondMode, BondParams, Link};

    #[test]
    fn names_by_mac_name_and_generated() {
        let mut a = Link::new("tap-a", LinkKind::Physical);
        a.mac = Some("52:54:00:00:00:01".into());
        let mut b = Link::new("tap-b", LinkKind::Physical);
        b.mac = Some("52:54:00:00:00:02".into());
        b.name = Some("data0".into());
        let mut c = Link::new("tap-c", LinkKind::Physical);
        c.mac = Some("52:54:00:00:00:03".into());
        let bond = Link::new(
            "a bond with spaces",
            LinkKind::Bond {
                members: vec!["tap-c".into()],
                params: BondParams::new(BondMode::ActiveBackup),
            },
        );
        let vlan = Link::new(
            "vlan0",
            LinkKind::Vlan {
                parent: "tap-a".into(),
                vlan_id: 42,
            },
        );
        let cfg = NetworkConfig {
            links: vec![a, b, c, bond, vlan],
            ..Default::default()
        };
        let host: BTreeMap<String, String> = [
            ("52:54:00:00:00:01".to_string(), "enp0s1".to_string()),
            ("52:54:00:00:00:02".to_string(), "enp0s2".to_string()),
        ]
        .into();
        let n = assign_names(&cfg, &host);
        assert_eq!(n.name("tap-a"), Some("enp0s1"));
        assert_eq!(n.name("tap-b"), Some("data0"));
        assert!(n.rename("tap-b"));
        assert_eq!(n.name("tap-c"), None);
        assert_eq!(n.missing_macs, ["tap-c"]);
        assert_eq!(n.name("a bond with spaces"), Some("bond0"));
        assert_eq!(n.name("vlan0"), Some("enp0s1.42"));
    }

    #[test]
    fn matches_resolve_against_the_target_in_name_order() {
        let nic = |n: &str, m: &str, d: Option<&str>| HostNic {
            name: n.into(),
            mac: m.into(),
            driver: d.map(str::to_string),
        };
        let host = vec![
            nic("eth1", "52:54:00:00:00:02", Some("virtio_net")),
            nic("eth0", "52:54:00:00:00:01", Some("virtio_net")),
            nic("ens5", "52:54:00:00:00:05", Some("ixgbe")),
            nic("ens9", "52:54:00:00:00:09", None),
        ];
        let mut glob = Link::new("lan", LinkKind::Physical);
        glob.match_name = Some("eth*".into());
        let mut drv = Link::new("fast", LinkKind::Physical);
        drv.match_driver = Some("ixg*".into());
        // MAC and name both given: both must match (ens9 has this MAC but another name).
        let mut both = Link::new("pinned", LinkKind::Physical);
        both.mac = Some("52:54:00:00:00:09".into());
        both.match_name = Some("enp9".into());
        let bond = Link::new(
            "bond0",
            LinkKind::Bond {
                members: vec!["lan".into()],
                params: BondParams::new(BondMode::ActiveBackup),
            },
        );
        let vlan = Link::new(
            "v5",
            LinkKind::Vlan {
                parent: "pinned".into(),
                vlan_id: 5,
            },
        );
        let cfg = NetworkConfig {
            links: vec![glob, drv, both, bond, vlan],
            ..Default::default()
        };
        let mut sorted = host.clone();
        sorted.sort_by(|a, b| a.name.cmp(&b.name));
        let (x, w) = expand_matches(&cfg, &sorted);
        let ids: Vec<&str> = x.links.iter().map(|l| l.id.as_str()).collect();
        assert_eq!(ids, ["lan", "lan#eth1", "fast", "bond0"], "{w:?}");
        assert_eq!(x.links[0].mac.as_deref(), Some("52:54:00:00:00:01"));
        assert_eq!(x.links[2].mac.as_deref(), Some("52:54:00:00:00:05"));
        assert_eq!(x.links[3].kind.members(), ["lan", "lan#eth1"]);
        assert!(x.links.iter().all(|l| !l.has_match_rules()));
        assert!(
            w.iter()
                .any(|w| w.contains("\"pinned\"") && w.contains("matches no interface")),
            "{w:?}"
        );
        assert!(
            w.iter()
                .any(|w| w.contains("\"v5\"") && w.contains("left out")),
            "{w:?}"
        );
        let names = assign_names_host(&x, &sorted);
        assert_eq!(names.name("lan#eth1"), Some("eth1"));
        assert_eq!(names.name("fast"), Some("ens5"));
        // Nothing to resolve: the config is unchanged.
        let plain = NetworkConfig {
            links: vec![Link::new("eth0", LinkKind::Physical)],
            ..Default::default()
        };
        assert_eq!(expand_matches(&plain, &sorted), (plain.clone(), vec![]));
    }
}
