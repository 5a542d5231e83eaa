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
    // A VLAN whose parent is left out goes too, and so on down its chain: warned round by
    // round (the VLANs whose parent is missing, then the VLANs on those, ...), each round in
    // link order. Each link's round from one walk up its chain (a round of scans per chain
    // level was cubic in chained VLANs; issue 15).
    let gone = vlans_left_out(&out);
    let mut rounds: Vec<Vec<usize>> = Vec::new();
    for (i, &r) in gone.iter().enumerate() {
        if r != STAYS {
            if rounds.len() < r {
                rounds.resize(r, Vec::new());
            }
            rounds[r - 1].push(i);
        }
    }
    for &i in rounds.iter().flatten() {
        warnings.push(format!(
            "vlan {:?}: its parent is not configured; left out",
            out.links[i].id
        ));
    }
    let mut i = 0;
    out.links.retain(|_| {
        i += 1;
        gone[i - 1] == STAYS
    });
    (out, warnings)
}

/// [`vlans_left_out`]: a link that stays.
const STAYS: usize = usize::MAX;

/// For each link, the round in which it is left out for a missing parent (1: its parent is
/// not among the links, k + 1: its parent goes in round k), or [`STAYS`]: not a VLAN, or
/// its chain ends at a link that stays (or loops). Every link walked once.
fn vlans_left_out(c: &NetworkConfig) -> Vec<usize> {
    const UNSEEN: usize = usize::MAX - 1;
    const WALKING: usize = usize::MAX - 2;
    let index = crate::model::network::LinkIndex::new(c);
    let mut round = vec![UNSEEN; c.links.len()];
    let mut path = Vec::new();
    for start in 0..c.links.len() {
        path.clear();
        let mut cur = start;
        // The round of the parent of the path's last link (0: a missing parent).
        let above = loop {
            match round[cur] {
                UNSEEN => {}
                // A parent loop: every parent is there, none goes.
                WALKING => break STAYS,
                r => break r,
            }
            let LinkKind::Vlan { parent, .. } = &c.links[cur].kind else {
                round[cur] = STAYS;
                break STAYS;
            };
            round[cur] = WALKING;
            path.push(cur);
            match index.position(parent) {
                Some(p) => cur = p,
                None => break 0,
            }
        };
        let mut r = above;
        for &x in path.iter().rev() {
            r = if r == STAYS { STAYS } else { r + 1 };
            round[x] = r;
        }
    }
    round
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

    fn vlan(id: &str, parent: &str) -> Link {
        Link::new(
            id,
            LinkKind::Vlan {
                parent: parent.into(),
                vlan_id: 7,
            },
        )
    }

    /// The VLANs left out, and their warnings, are the ones the round-by-round scan gave:
    /// chains listed child first, a branch, a parent that never existed, a parent loop.
    #[test]
    fn vlans_left_out_as_the_rounds_of_scans_gave() {
        let mut c = NetworkConfig::default();
        for (id, parent) in [
            ("c3", "c2"),
            ("c2", "c1"),
            ("b2", "c1"),
            ("c1", "gone"),
            ("k", "nic"),
            ("k2", "k"),
            ("x1", "x2"),
            ("x2", "x1"),
            ("e", ""),
            ("e2", "e"),
            ("c4", "c3"),
        ] {
            c.links.push(vlan(id, parent));
        }
        c.links.push(Link::new("nic", LinkKind::Physical));
        let mut old = c.clone();
        let mut want = Vec::new();
        loop {
            let gone: Vec<String> = old
                .links
                .iter()
                .filter(|l| match &l.kind {
                    LinkKind::Vlan { parent, .. } => old.link(parent).is_none(),
                    _ => false,
                })
                .map(|l| l.id.clone())
                .collect();
            if gone.is_empty() {
                break;
            }
            for g in &gone {
                want.push(format!(
                    "vlan {g:?}: its parent is not configured; left out"
                ));
            }
            old.links.retain(|l| !gone.contains(&l.id));
        }
        // One link with a match rule, so that the expansion runs: it matches its one NIC.
        let mut m = Link::new("m", LinkKind::Physical);
        m.match_name = Some("en*".into());
        c.links.push(m.clone());
        old.links.push(m);
        let host = [HostNic {
            name: "en0".into(),
            mac: "52:54:00:00:00:01".into(),
            driver: None,
        }];
        old.links.last_mut().unwrap().match_name = None;
        old.links.last_mut().unwrap().mac = Some("52:54:00:00:00:01".into());
        let (got, w) = expand_matches(&c, &host);
        assert_eq!(w, want);
        assert_eq!(got, old);
        assert_eq!(
            got.links.iter().map(|l| l.id.as_str()).collect::<Vec<_>>(),
            ["k", "k2", "x1", "x2", "nic", "m"]
        );
    }

    /// A chain of 20,000 VLANs on a NIC whose glob matches nothing: all left out, one
    /// warning each, top down. A round of scans per chain level was cubic (never finished).
    #[test]
    fn twenty_thousand_chained_vlans_on_an_unmatched_nic_are_left_out_in_linear_time() {
        let n = 20_000;
        let mut c = NetworkConfig::default();
        let mut m = Link::new("v0", LinkKind::Physical);
        m.match_name = Some("nothing*".into());
        c.links.push(m);
        for i in 1..n {
            c.links.push(vlan(&format!("v{i}"), &format!("v{}", i - 1)));
        }
        let (got, w) = expand_matches(&c, &[]);
        assert!(got.links.is_empty());
        assert_eq!(w.len(), n);
        assert!(w[1].starts_with("vlan \"v1\""), "{}", w[1]);
        assert!(w[n - 1].starts_with(&format!("vlan \"v{}\"", n - 1)));
    }

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
