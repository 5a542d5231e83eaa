//! ifupdown renderer: one `/etc/network/interfaces.d/primer` with a stanza per link and family
//! (bonds need `ifenslave`, VLANs are named `parent.vid`, which ifupdown creates itself), and,
//! where nothing else manages it, `/etc/resolv.conf` (ifupdown acts on `dns-*` lines only
//! through resolvconf). Pure. A NIC whose name is unknown (not on the target, as when an image
//! is rendered offline) is configured by MAC: ifupdown's `auto mac/MAC/=LOGICAL` pattern maps
//! whatever interface has that MAC at boot to a logical stanza. Name globs and driver matches
//! arrive resolved (`render::try_render`). What ifupdown cannot express (a VLAN or bridge port
//! on a NIC of unknown name) is left out and reported.

use std::fmt::Write;

use super::{bond_option_warning, bond_value, Check, RenderError, HEADER};
use super::{lf, link_dns, member_l3_warning, needs_onlink, ordered, RenderOptions, Rendered};
use crate::model::network::{Ipv6Auto, LinkKind, NetworkConfig, Route};
use crate::net::naming::Names;

pub const PATH: &str = "etc/network/interfaces.d/primer";
pub const RESOLV_CONF: &str = "etc/resolv.conf";

pub fn render_eni(
    c: &NetworkConfig,
    names: &Names,
    o: &RenderOptions,
) -> Result<Rendered, RenderError> {
    let c = &super::Net::new(c);
    let mut out = Rendered::default();
    let mut s = format!("{HEADER}\n");
    // Every drive-derived value is one safe word (ifupdown hands `up` lines to the shell), or
    // nothing is rendered.
    let ck = Check { file: PATH };
    // A NIC configured through a MAC-mapped stanza: not on the target (unnamed, or absent and
    // to be renamed). Its real name is known only to ifupdown at boot.
    // The NICs whose MAC is not on the target, as a set: the list searched per link, member
    // and parent was quadratic in NICs (issue 15).
    let mut missing: std::collections::HashSet<&str> = std::collections::HashSet::new();
    for m in &names.missing_macs {
        missing.insert(m);
    }
    let mapped = |id: &str| {
        c.link(id).is_some_and(|l| {
            matches!(l.kind, LinkKind::Physical)
                && l.mac.is_some()
                && (names.name(id).is_none() || (names.rename(id) && missing.contains(&id)))
        })
    };
    // A real interface name by link id, checked (none for a MAC-mapped NIC).
    let name_of = |i: usize, id: &str| -> Result<Option<&str>, RenderError> {
        if mapped(id) {
            return Ok(None);
        }
        names
            .name(id)
            .map(|n| ck.token(&lf(i, "name"), n))
            .transpose()
    };
    // Logical names of the MAC-mapped stanzas so far (one per MAC).
    let mut mapped_macs = std::collections::BTreeSet::new();
    for (i, l) in ordered(c) {
        if let Some(w) = member_l3_warning(c, l) {
            out.warnings.push(w);
        }
        // A NIC not present under a known name (an image rendered offline, a NIC that appears
        // later): a stanza under a logical name, mapped from the NIC's MAC by ifupdown's own
        // pattern `auto mac/MAC/=LOGICAL` (interfaces(5), "PATTERN MATCHING INTERFACES"):
        // `ifup -a` at boot finds the interface with that MAC, whatever the image named it, and
        // configures it with the logical stanza ($IFACE is the real name in its commands).
        // A NIC the source wants renamed and that is not on the target is mapped by MAC too:
        // ifupdown cannot rename, so the wanted name would match nothing.
        let (name, pattern) = match name_of(i, &l.id)? {
            Some(n) => (n.to_string(), None),
            None => match (&l.kind, &l.mac) {
                (LinkKind::Physical, Some(m)) => {
                    let m = ck.token(&lf(i, "mac"), m)?;
                    let logical = logical_name(m);
                    if !mapped_macs.insert(logical.clone()) {
                        out.warnings.push(format!(
                            "link {:?} ({m}): another link already matches this MAC; left out",
                            l.id
                        ));
                        continue;
                    }
                    if l.name.is_some() {
                        out.warnings.push(format!(
                            "link {:?} ({m}): ifupdown cannot rename a NIC; configured by MAC under its own name",
                            l.id
                        ));
                    }
                    (logical.clone(), Some(format!("mac/{m}/={logical}")))
                }
                _ => {
                    out.warnings.push(format!(
                        "link {:?}{}: no interface with this MAC on the target and no name given; ifupdown needs a name, so it is left out",
                        l.id,
                        l.mac.as_deref().map(|m| format!(" ({m})")).unwrap_or_default()
                    ));
                    continue;
                }
            },
        };
        let name = name.as_str();
        // What the stanza's shell commands call the interface: the real name, which for a
        // MAC-mapped stanza only ifupdown knows ($IFACE, quoted: one word whatever it is).
        let dev = if pattern.is_some() { IFACE } else { name };
        if pattern.is_none() && names.rename(&l.id) {
            out.warnings.push(format!(
                "link {:?}: ifupdown cannot rename a NIC; configured as {name:?}, which must exist under that name",
                l.id
            ));
        }
        let mut common = String::new();
        if let Some(mtu) = l.mtu {
            let _ = writeln!(common, "    mtu {mtu}");
        }
        if !matches!(l.kind, LinkKind::Physical) {
            if let Some(m) = &l.mac {
                let m = ck.token(&lf(i, "mac"), m)?;
                let _ = writeln!(common, "    hwaddress ether {m}");
            }
        }
        let ctl = c.controller_of(&l.id);
        match (&l.kind, ctl) {
            (_, Some(ctl)) if matches!(ctl.kind, LinkKind::Bond { .. }) => {
                // A bond always has a name (generated when the drive gives none).
                let Some(cn) = name_of(i, &ctl.id)? else {
                    out.warnings.push(format!(
                        "link {:?}: its bond {:?} has no name; left out",
                        l.id, ctl.id
                    ));
                    continue;
                };
                let _ = writeln!(common, "    bond-master {cn}");
                if let LinkKind::Bond { params, .. } = &ctl.kind {
                    if params.primary.as_deref() == Some(l.id.as_str()) {
                        if pattern.is_none() {
                            let _ = writeln!(common, "    bond-primary {name}");
                        } else {
                            // A MAC-mapped primary has no name to write: once enslaved, it
                            // makes itself the primary under its real name.
                            let _ = writeln!(
                                common,
                                "    up ip link set dev {cn} type bond primary {IFACE}"
                            );
                        }
                    }
                }
            }
            (LinkKind::Bond { members, params }, _) => {
                // A member without a name is still configured when it is mapped by its MAC.
                let m: Vec<&str> = members
                    .iter()
                    .filter(|m| names.name(m).is_some() || mapped(m))
                    .map(String::as_str)
                    .collect();
                if m.len() < members.len() {
                    out.warnings.push(format!(
                        "bond {:?}: {} member(s) without a name are left out",
                        l.id,
                        members.len() - m.len()
                    ));
                }
                // The members name their bond (bond-master); the bond waits for them.
                let _ = writeln!(common, "    bond-slaves none");
                let _ = writeln!(common, "    bond-mode {}", params.mode);
                if let Some(x) = params.miimon {
                    let _ = writeln!(common, "    bond-miimon {x}");
                }
                if let Some(x) = &params.xmit_hash_policy {
                    let x = ck.token(&lf(i, "xmit_hash_policy"), x)?;
                    let _ = writeln!(common, "    bond-xmit-hash-policy {x}");
                }
                if let Some(x) = &params.lacp_rate {
                    let x = ck.token(&lf(i, "lacp_rate"), x)?;
                    let _ = writeln!(common, "    bond-lacp-rate {x}");
                }
                // ifenslave writes each `bond-<option>` to the bond's sysfs file of that name.
                for o in &params.options {
                    if !o.spec.eni {
                        out.warnings
                            .push(bond_option_warning(l, o.spec.kernel, "ifupdown"));
                        continue;
                    }
                    let v = bond_value(&ck, i, o, " ")?;
                    let _ = writeln!(common, "    bond-{} {v}", o.spec.kernel.replace('_', "-"));
                }
                if let Some(p) = params.primary.as_deref() {
                    if let Some(p) = name_of(i, p)? {
                        let _ = writeln!(common, "    bond-primary {p}");
                    } else if !mapped(p) {
                        out.warnings.push(format!(
                            "bond {:?}: its primary {p:?} has no known interface name; bond-primary left out",
                            l.id
                        ));
                    }
                }
            }
            (LinkKind::Vlan { parent, vlan_id }, _) => match name_of(i, parent)? {
                Some(p) => {
                    let _ = writeln!(common, "    vlan-raw-device {p}");
                    if name != format!("{p}.{vlan_id}") {
                        out.warnings.push(format!(
                            "vlan {:?}: named {name:?}; ifupdown derives the VLAN id from a name of the form parent.id",
                            l.id
                        ));
                    }
                }
                None => {
                    out.warnings.push(format!(
                        "vlan {:?}: its parent {parent:?} has no name; left out",
                        l.id
                    ));
                    continue;
                }
            },
            (LinkKind::Bridge { members, stp }, _) => {
                let mut m: Vec<&str> = Vec::new();
                for x in members {
                    if let Some(n) = name_of(i, x)? {
                        m.push(n);
                    }
                }
                let _ = writeln!(
                    common,
                    "    bridge_ports {}",
                    if m.is_empty() {
                        "none".to_string()
                    } else {
                        m.join(" ")
                    }
                );
                if let Some(stp) = stp {
                    let _ = writeln!(common, "    bridge_stp {}", if *stp { "on" } else { "off" });
                }
            }
            _ => {}
        }

        let _ = write!(s, "\nauto {}\n", pattern.as_deref().unwrap_or(name));
        if ctl.is_some() {
            let _ = write!(s, "iface {name} inet manual\n{common}");
            continue;
        }
        let l3 = &l.l3;
        let dns = link_dns(c, l);
        let v4: Vec<_> = l3.addresses.iter().filter(|a| a.addr().is_ipv4()).collect();
        let v6: Vec<_> = l3.addresses.iter().filter(|a| a.addr().is_ipv6()).collect();
        let routes4: Vec<&Route> = l3.routes.iter().filter(|r| r.to.addr().is_ipv4()).collect();
        let routes6: Vec<&Route> = l3.routes.iter().filter(|r| r.to.addr().is_ipv6()).collect();
        // IPv4: the first stanza carries the link options, DNS and the routes.
        let method4 = if l3.dhcp4 {
            "dhcp"
        } else if v4.is_empty() {
            "manual"
        } else {
            "static"
        };
        let _ = write!(s, "iface {name} inet {method4}\n{common}");
        if method4 == "static" {
            let _ = writeln!(s, "    address {}", v4[0]);
        }
        if !dns.nameservers.is_empty() {
            let ns: Vec<String> = dns.nameservers.iter().map(|a| a.to_string()).collect();
            let _ = writeln!(s, "    dns-nameservers {}", ns.join(" "));
        }
        if !dns.search.is_empty() {
            let d = ck.tokens(&lf(i, "dns.search"), &dns.search)?;
            let _ = writeln!(s, "    dns-search {}", d.join(" "));
        }
        if l3.ipv6 == Ipv6Auto::Off && v6.is_empty() {
            // No IPv6 asked for: keep the kernel from taking addresses from router
            // advertisements (it would by default). Runs right after the link is set up,
            // before the first router solicitation goes out.
            let _ = writeln!(
                s,
                "    up sysctl -q -e -w net.ipv6.conf.{}.accept_ra=0",
                if pattern.is_some() {
                    dev.to_string()
                } else {
                    name.replace('.', "/")
                }
            );
        }
        route_lines(&mut s, dev, l3, &routes4);
        for a in v4.iter().skip(1) {
            let _ = write!(s, "iface {name} inet static\n    address {a}\n");
        }
        // IPv6.
        match l3.ipv6 {
            Ipv6Auto::Off if v6.is_empty() => {}
            Ipv6Auto::Off => {
                let _ = write!(
                    s,
                    "iface {name} inet6 static\n    address {}\n    accept_ra 0\n    autoconf 0\n",
                    v6[0]
                );
                if method4 == "manual" && l.mtu.is_some() {
                    let _ = writeln!(s, "    mtu {}", l.mtu.unwrap_or_default());
                }
            }
            Ipv6Auto::Slaac => {
                let _ = write!(s, "iface {name} inet6 auto\n    accept_ra 1\n    dhcp 0\n");
            }
            Ipv6Auto::DhcpStateless => {
                let _ = write!(s, "iface {name} inet6 auto\n    accept_ra 1\n    dhcp 1\n");
            }
            Ipv6Auto::DhcpStateful => {
                let _ = write!(s, "iface {name} inet6 dhcp\n    accept_ra 1\n");
            }
        }
        let first6 = if l3.ipv6 == Ipv6Auto::Off { 1 } else { 0 };
        if !routes6.is_empty() {
            if l3.ipv6 == Ipv6Auto::Off && v6.is_empty() {
                out.warnings.push(format!(
                    "link {:?}: IPv6 routes without IPv6 configuration are left out",
                    l.id
                ));
            } else {
                route_lines(&mut s, dev, l3, &routes6);
            }
        }
        for a in v6.iter().skip(first6) {
            let _ = write!(
                s,
                "iface {name} inet6 static\n    address {a}\n    accept_ra 0\n    autoconf 0\n"
            );
        }
    }
    out.push(PATH.to_string(), &s, 0o644);
    if o.eni_resolv_conf {
        // The machine-wide DNS followed by every link's, each once: what `Dns::merged` of
        // each link's onto the sum so far gives, without copying and scanning the sum per
        // link (quadratic in links with DNS of their own; issue 15). The resolver reads three
        // servers, so no more are gathered; every search domain is, as each is checked.
        let mut dns = c.dns.clone();
        let mut seen: std::collections::HashSet<String> = std::collections::HashSet::new();
        for d in &dns.search {
            seen.insert(d.clone());
        }
        for l in &c.links {
            let more = link_dns(c, l);
            for a in &more.nameservers {
                if dns.nameservers.len() >= 3 {
                    break;
                }
                dns.add_server(*a);
            }
            for d in &more.search {
                // `Dns::add_search`'s gate and form.
                let d = d.trim();
                if crate::model::network::check_search_domain(d).is_ok() {
                    let d = d.trim_end_matches('.').to_string();
                    if !seen.contains(&d) {
                        seen.insert(d.clone());
                        dns.search.push(d);
                    }
                }
            }
        }
        if !dns.is_empty() {
            let mut r = format!("{HEADER}\n");
            // The resolver reads at most three servers and six search domains.
            for a in dns.nameservers.iter().take(3) {
                let _ = writeln!(r, "nameserver {a}");
            }
            if !dns.search.is_empty() {
                let rc = Check { file: RESOLV_CONF };
                let d = rc.tokens("search", &dns.search)?;
                let _ = writeln!(r, "search {}", d[..d.len().min(6)].join(" "));
            }
            out.push(RESOLV_CONF.to_string(), &r, 0o644);
        }
    }
    out.done()
}

/// ifupdown's variable holding the real interface name in a stanza's commands, quoted.
pub const IFACE: &str = "\"$IFACE\"";

/// The logical name of a MAC-mapped stanza: `primer-mac-` and the MAC's 12 hex digits. Longer
/// than an interface name can be (15 bytes), so it never names a real interface by accident
/// (`ifup NAME` takes a real name first); no `.` (ifupdown's VLAN naming).
pub fn logical_name(mac: &str) -> String {
    format!("primer-mac-{}", mac.replace(':', ""))
}

/// `up`/`down` commands for routes: ifupdown's `gateway` option takes only one route, without
/// a metric for IPv6 on older releases; `ip route` states each route exactly.
fn route_lines(s: &mut String, name: &str, l3: &crate::model::network::L3, routes: &[&Route]) {
    for r in routes {
        let mut spec = format!("{}", r.to);
        if r.is_default() {
            spec = "default".to_string();
        }
        if let Some(g) = r.via {
            spec.push_str(&format!(" via {g}"));
        }
        if let Some(m) = r.metric {
            spec.push_str(&format!(" metric {m}"));
        }
        let fam = if r.to.addr().is_ipv6() { "-6 " } else { "" };
        let onlink = if needs_onlink(l3, r) { " onlink" } else { "" };
        let _ = writeln!(s, "    up ip {fam}route add {spec} dev {name}{onlink}");
        let _ = writeln!(s, "    down ip {fam}route del {spec} dev {name} || true");
    }
}
