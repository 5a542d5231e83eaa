//! netplan renderer: one `/etc/netplan/50-primer.yaml` (mode 0600: netplan warns about
//! readable files) in netplan's own v2 syntax. Pure. Every string is double-quoted, so no value
//! can change the YAML structure. NICs are matched by MAC (`set-name` when a name is asked for).

use std::fmt::Write;

use super::{bond_option_warning, bond_value, Check, RenderError, Rendered, HEADER};
use super::{lf, link_dns, member_l3_warning, needs_onlink, ordered, safe_id, RenderOptions};
use crate::model::network::{BondValue, Ipv6Auto, Link, LinkKind, NetworkConfig};
use crate::net::naming::Names;

pub const PATH: &str = "etc/netplan/50-primer.yaml";

/// A YAML double-quoted scalar.
fn q(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// A bond's or bridge's members as a netplan flow list of their quoted keys.
fn member_keys(c: &super::Net, k: &Keys, members: &[String]) -> String {
    members
        .iter()
        .filter_map(|m| c.link(m))
        .map(|m| q(&k.key(m)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The netplan ids of links, with the interface names every link was given indexed: whether
/// another link holds a name was a scan of every link for each link, member and parent
/// (3,000 VLANs and 3,000 bond members: 9 s in a debug build; issue 15).
struct Keys<'a> {
    names: &'a Names,
    /// Interface name -> the first link holding it, or `usize::MAX` when links of two
    /// different ids hold it. The map type `LinkIndex` already uses (one instantiation).
    named: std::collections::HashMap<&'a str, usize>,
    links: &'a [Link],
}

impl<'a> Keys<'a> {
    fn new(c: &'a NetworkConfig, names: &'a Names) -> Keys<'a> {
        let mut named = std::collections::HashMap::with_capacity(c.links.len());
        for (i, l) in c.links.iter().enumerate() {
            if let Some(n) = names.name(&l.id) {
                let first = named.entry(n).or_insert(i);
                if *first != usize::MAX && c.links[*first].id != l.id {
                    *first = usize::MAX;
                }
            }
        }
        Keys {
            names,
            named,
            links: &c.links,
        }
    }

    /// Whether a link of another id than `id` has the interface name `n`.
    fn taken_by_other(&self, n: &str, id: &str) -> bool {
        self.named
            .get(n)
            .is_some_and(|&i| i == usize::MAX || self.links[i].id != id)
    }

    /// The netplan id of a link: its interface name when known (required for virtual links),
    /// else a safe form of its id (a NIC matched by MAC).
    fn key(&self, l: &Link) -> String {
        let names = self.names;
        match names.name(&l.id) {
            Some(n) if !matches!(l.kind, LinkKind::Physical) || !names.rename(&l.id) => {
                n.to_string()
            }
            _ => {
                let base = safe_id(&l.id);
                // Never collide with a named link's key.
                if self.taken_by_other(&base, &l.id) {
                    format!("primer-{base}")
                } else {
                    base
                }
            }
        }
    }
}

pub fn render_netplan(
    c: &NetworkConfig,
    names: &Names,
    o: &RenderOptions,
) -> Result<Rendered, RenderError> {
    let keys = Keys::new(c, names);
    let c = &super::Net::new(c);
    let mut out = Rendered::default();
    // Values are quoted (`q`), and still each drive-derived one must be one safe word: a YAML
    // escape is no excuse for a newline in an interface name or a search domain.
    let ck = Check { file: PATH };
    let mut sections: [(&str, String); 4] = [
        ("ethernets", String::new()),
        ("bonds", String::new()),
        ("bridges", String::new()),
        ("vlans", String::new()),
    ];
    for (i, l) in ordered(c) {
        if let Some(w) = member_l3_warning(c, l) {
            out.warnings.push(w);
        }
        let k = keys.key(l);
        if let Some(m) = &l.mac {
            ck.token(&lf(i, "mac"), m)?;
        }
        if let Some(n) = names.name(&l.id) {
            ck.token(&lf(i, "name"), n)?;
        }
        let mut s = format!("    {}:\n", q(&k));
        let section = match &l.kind {
            LinkKind::Physical if l.has_match_rules() => {
                // netplan's own match: every given property must match.
                let _ = writeln!(s, "      match:");
                if let Some(m) = &l.mac {
                    let _ = writeln!(s, "        macaddress: {}", q(m));
                }
                if let Some(g) = &l.match_name {
                    let _ = writeln!(s, "        name: {}", q(ck.glob(&lf(i, "match_name"), g)?));
                }
                if let Some(g) = &l.match_driver {
                    let _ = writeln!(
                        s,
                        "        driver: {}",
                        q(ck.glob(&lf(i, "match_driver"), g)?)
                    );
                }
                if let Some(n) = &l.name {
                    let _ = writeln!(s, "      set-name: {}", q(ck.token(&lf(i, "name"), n)?));
                }
                0
            }
            LinkKind::Physical => {
                match (&l.mac, names.name(&l.id)) {
                    (Some(m), name) => {
                        let _ = writeln!(s, "      match:\n        macaddress: {}", q(m));
                        if let Some(n) = name.filter(|_| names.rename(&l.id)) {
                            let _ = writeln!(s, "      set-name: {}", q(n));
                        }
                    }
                    (None, Some(n)) => {
                        let _ = writeln!(s, "      match:\n        name: {}", q(n));
                    }
                    (None, None) => {
                        out.warnings.push(format!(
                            "link {:?}: neither a MAC address nor a name to match; not rendered",
                            l.id
                        ));
                        continue;
                    }
                }
                0
            }
            LinkKind::Bond { members, params } => {
                let _ = writeln!(s, "      interfaces: [{}]", member_keys(c, &keys, members));
                let _ = writeln!(
                    s,
                    "      parameters:\n        mode: {}",
                    q(params.mode.as_str())
                );
                if let Some(x) = params.miimon {
                    let _ = writeln!(s, "        mii-monitor-interval: {x}");
                }
                if let Some(x) = &params.xmit_hash_policy {
                    let x = ck.token(&lf(i, "xmit_hash_policy"), x)?;
                    let _ = writeln!(s, "        transmit-hash-policy: {}", q(x));
                }
                if let Some(x) = &params.lacp_rate {
                    let x = ck.token(&lf(i, "lacp_rate"), x)?;
                    let _ = writeln!(s, "        lacp-rate: {}", q(x));
                }
                if let Some(p) = params.primary.as_deref().and_then(|p| c.link(p)) {
                    let _ = writeln!(s, "        primary: {}", q(&keys.key(p)));
                }
                for o in &params.options {
                    let Some(k) = o.spec.netplan else {
                        out.warnings
                            .push(bond_option_warning(l, o.spec.kernel, "netplan"));
                        continue;
                    };
                    let v = match &o.value {
                        BondValue::Word(_) | BondValue::Mac(_) => q(&bond_value(&ck, i, o, "")?),
                        BondValue::Bool(b) => b.to_string(),
                        BondValue::Num(n) => n.to_string(),
                        BondValue::Ips(a) => format!(
                            "[{}]",
                            a.iter()
                                .map(|x| q(&x.to_string()))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    };
                    let _ = writeln!(s, "        {k}: {v}");
                }
                1
            }
            LinkKind::Bridge { members, stp } => {
                let _ = writeln!(s, "      interfaces: [{}]", member_keys(c, &keys, members));
                if let Some(stp) = stp {
                    let _ = writeln!(s, "      parameters:\n        stp: {stp}");
                }
                2
            }
            LinkKind::Vlan { parent, vlan_id } => {
                let p = c.link(parent).map(|p| keys.key(p)).unwrap_or_default();
                let _ = writeln!(s, "      id: {vlan_id}\n      link: {}", q(&p));
                3
            }
        };
        if !matches!(l.kind, LinkKind::Physical) {
            if let Some(m) = &l.mac {
                let _ = writeln!(s, "      macaddress: {}", q(m));
            }
        }
        if let Some(mtu) = l.mtu {
            let _ = writeln!(s, "      mtu: {mtu}");
        }
        if c.controller_of(&l.id).is_none() {
            let l3 = &l.l3;
            let _ = writeln!(s, "      dhcp4: {}", l3.dhcp4);
            let _ = writeln!(s, "      dhcp6: {}", l3.ipv6 == Ipv6Auto::DhcpStateful);
            let _ = writeln!(s, "      accept-ra: {}", l3.ipv6.accept_ra());
            if !l3.is_configured() {
                let _ = writeln!(s, "      link-local: []");
            }
            if !l3.addresses.is_empty() {
                s.push_str("      addresses:\n");
                for a in &l3.addresses {
                    let _ = writeln!(s, "        - {}", q(&a.to_string()));
                }
            }
            if !l3.routes.is_empty() {
                s.push_str("      routes:\n");
                for r in &l3.routes {
                    let to = if r.is_default() {
                        "default".to_string()
                    } else {
                        r.to.to_string()
                    };
                    let _ = writeln!(s, "        - to: {}", q(&to));
                    if let Some(g) = r.via {
                        let _ = writeln!(s, "          via: {}", q(&g.to_string()));
                    }
                    if let Some(m) = r.metric {
                        let _ = writeln!(s, "          metric: {m}");
                    }
                    if needs_onlink(l3, r) {
                        s.push_str("          on-link: true\n");
                    }
                }
            }
            let dns = link_dns(c, l);
            if !dns.is_empty() {
                s.push_str("      nameservers:\n");
                if !dns.nameservers.is_empty() {
                    let a: Vec<String> =
                        dns.nameservers.iter().map(|a| q(&a.to_string())).collect();
                    let _ = writeln!(s, "        addresses: [{}]", a.join(", "));
                }
                if !dns.search.is_empty() {
                    let d = ck.tokens(&lf(i, "dns.search"), &dns.search)?;
                    let a: Vec<String> = d.iter().map(|x| q(x)).collect();
                    let _ = writeln!(s, "        search: [{}]", a.join(", "));
                }
            }
        } else {
            // A member carries no addresses of its own.
            s.push_str("      dhcp4: false\n      dhcp6: false\n      accept-ra: false\n      link-local: []\n");
        }
        sections[section].1.push_str(&s);
    }
    let mut y = format!("{HEADER}\nnetwork:\n  version: 2\n");
    if let Some(r) = &o.netplan_renderer {
        let r = ck.token("renderer", r)?;
        let _ = writeln!(y, "  renderer: {r}");
    }
    for (name, body) in &sections {
        if !body.is_empty() {
            let _ = write!(y, "  {name}:\n{body}");
        }
    }
    out.push(PATH.to_string(), &y, 0o600);
    out.done()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::network::{BondMode, BondParams};
    use crate::net::naming::{assign_names, LinkName};

    /// The keys from the index are the ones the scan of every link gave, on names that collide
    /// with other links' safe ids, a link's own name and a duplicated id.
    #[test]
    fn keys_equal_the_scan() {
        let mut c = NetworkConfig::default();
        for (id, kind) in [
            ("a", LinkKind::Physical),
            ("b", LinkKind::Physical),
            ("a", LinkKind::Physical),
            ("c d", LinkKind::Physical),
            ("e", LinkKind::Physical),
            ("f", LinkKind::Physical),
            ("g", LinkKind::Physical),
            ("h", LinkKind::Physical),
            (
                "v",
                LinkKind::Vlan {
                    parent: "a".into(),
                    vlan_id: 5,
                },
            ),
        ] {
            c.links.push(Link::new(id, kind));
        }
        let mut names = Names::default();
        for (id, name, rename) in [
            ("a", Some("b"), true),
            ("b", Some("a"), true),
            ("c d", Some("c_d"), true),
            ("e", None, false),
            ("f", Some("h"), false),
            ("g", Some("h"), true),
            ("h", Some("x"), true),
            ("v", Some("e"), false),
        ] {
            names.links.insert(
                id.into(),
                LinkName {
                    name: name.map(str::to_string),
                    rename,
                },
            );
        }
        let scan = |l: &Link| match names.name(&l.id) {
            Some(n) if !matches!(l.kind, LinkKind::Physical) || !names.rename(&l.id) => {
                n.to_string()
            }
            _ => {
                let base = safe_id(&l.id);
                if c.links
                    .iter()
                    .any(|o| o.id != l.id && names.name(&o.id) == Some(base.as_str()))
                {
                    format!("primer-{base}")
                } else {
                    base
                }
            }
        };
        let keys = Keys::new(&c, &names);
        let got: Vec<String> = c.links.iter().map(|l| keys.key(l)).collect();
        let want: Vec<String> = c.links.iter().map(scan).collect();
        assert_eq!(got, want);
        assert_eq!(
            got,
            ["primer-a", "primer-b", "primer-a", "c_d", "primer-e", "h", "g", "primer-h", "e"]
        );
    }

    /// 20,000 links: 10,000 NICs matched by MAC (each key checked against every name), half
    /// of them in one bond, 9,999 VLANs on them. The name index makes each key one lookup;
    /// the scan per key, member and parent took 25,000 x 20,000 name lookups (minutes in a
    /// debug build). Counts, not time: the file holds every NIC, member and VLAN.
    #[test]
    fn twenty_thousand_links_render_with_one_lookup_per_key() {
        let n = 10_000;
        let mut c = NetworkConfig::default();
        for i in 0..n {
            let mut p = Link::new(format!("n{i}"), LinkKind::Physical);
            p.mac = Some(format!("52:54:01:00:{:02x}:{:02x}", i >> 8, i & 255));
            c.links.push(p);
        }
        c.links.push(Link::new(
            "b",
            LinkKind::Bond {
                members: (0..n / 2).map(|i| format!("n{i}")).collect(),
                params: BondParams::new(BondMode::ActiveBackup),
            },
        ));
        for i in 1..n {
            c.links.push(Link::new(
                format!("v{i}"),
                LinkKind::Vlan {
                    parent: format!("n{i}"),
                    vlan_id: (i % 4000) as u16 + 1,
                },
            ));
        }
        assert_eq!(c.links.len(), 2 * n);
        let names = assign_names(&c, &Default::default());
        let r = render_netplan(&c, &names, &RenderOptions::default()).unwrap();
        let y = &r.files[0].content;
        assert_eq!(y.matches("        macaddress: ").count(), n);
        assert_eq!(y.matches("      link: ").count(), n - 1);
        assert!(y.contains("      link: \"n9999\"\n"));
        let bond = y
            .lines()
            .find(|l| l.starts_with("      interfaces: ["))
            .unwrap();
        assert_eq!(bond.matches(", ").count(), n / 2 - 1);
    }
}
