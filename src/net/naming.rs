//! Interface naming: decides the OS name of every link from the source's `name`, the target's
//! interfaces (MAC -> name, read from `<root>/sys/class/net/*/address` by `host`) and, for
//! virtual links, a generated name. Pure. A physical link with no known name stays unnamed:
//! networkd, NetworkManager and netplan match it by MAC; ifupdown cannot and says so.

use std::collections::{BTreeMap, BTreeSet};

use crate::model::network::{valid_ifname, LinkKind, NetworkConfig};

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
}

impl Names {
    pub fn name(&self, id: &str) -> Option<&str> {
        self.links.get(id).and_then(|n| n.name.as_deref())
    }
    pub fn rename(&self, id: &str) -> bool {
        self.links.get(id).is_some_and(|n| n.rename)
    }
}

/// Chooses names. `host` maps lower-case MAC -> current interface name on the target.
pub fn assign_names(c: &NetworkConfig, host: &BTreeMap<String, String>) -> Names {
    let mut names = Names::default();
    let mut used: BTreeSet<String> = host.values().cloned().collect();
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
            .filter(|n| valid_ifname(n));
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
}
