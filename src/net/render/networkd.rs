//! systemd-networkd renderer: `10-primer-<id>.network` for every link, `.netdev` for bonds,
//! VLANs and bridges, `.link` for a NIC the source wants renamed. Pure. NICs are matched by
//! `PermanentMACAddress=` (systemd >= 251): a bond member's current MAC changes when it is
//! enslaved and a VLAN inherits its parent's MAC, so matching the current MAC would pick the
//! wrong interface.

use std::fmt::Write;

use super::{bond_option_warning, bond_value, Check, RenderError, HEADER};
use super::{
    file_ids, is_member, lf, link_dns, member_l3_warning, needs_onlink, ordered, Rendered,
};
use crate::model::network::{BondKind, BondValue, Ipv6Auto, LinkKind, NetworkConfig};
use crate::net::naming::Names;

const DIR: &str = "etc/systemd/network";

pub fn render_networkd(c: &NetworkConfig, names: &Names) -> Result<Rendered, RenderError> {
    let c = &super::Net::new(c);
    let mut out = Rendered::default();
    let ids = file_ids(c);
    let vlans = super::vlans_by_parent(c);
    for (i, l) in ordered(c) {
        let base = format!("{DIR}/10-primer-{}", ids[i]);
        let network_path = format!("{base}.network");
        let netdev_path = format!("{base}.netdev");
        let link_path = format!("{base}.link");
        // Every drive-derived value is one safe word of its file, or nothing is rendered.
        let ck = Check {
            file: &network_path,
        };
        let name = names
            .name(&l.id)
            .map(|n| ck.token(&lf(i, "name"), n))
            .transpose()?;
        let mac = l
            .mac
            .as_deref()
            .map(|m| ck.token(&lf(i, "mac"), m))
            .transpose()?;
        if let Some(w) = member_l3_warning(c, l) {
            out.warnings.push(w);
        }
        // The match rules of a NIC matched by name glob or driver (with its MAC when given):
        // networkd ANDs the keys of one `[Match]`, as netplan means them.
        let mut rules = String::new();
        if l.has_match_rules() {
            if let Some(m) = mac {
                let _ = writeln!(rules, "PermanentMACAddress={m}");
            }
            if let Some(g) = &l.match_driver {
                let _ = writeln!(rules, "Driver={}", ck.glob(&lf(i, "match_driver"), g)?);
            }
        }
        let name_glob = if l.has_match_rules() {
            l.match_name
                .as_deref()
                .map(|g| ck.glob(&lf(i, "match_name"), g))
                .transpose()?
        } else {
            None
        };
        if l.has_match_rules() {
            if let Some(n) = l.name.as_deref().and(name) {
                // set-name: a `.link` renames whatever matches (by its kernel name, as netplan
                // writes it), and the `.network` matches the new name.
                let orig = name_glob
                    .map(|g| format!("OriginalName={g}\n"))
                    .unwrap_or_default();
                out.push(
                    link_path.clone(),
                    &format!("{HEADER}\n[Match]\n{rules}{orig}\n[Link]\nName={n}\n"),
                    0o644,
                );
                rules = format!("Name={n}\n");
            } else if let Some(g) = name_glob {
                let _ = writeln!(rules, "Name={g}");
            }
        }
        // Rename a NIC by its permanent MAC.
        if matches!(l.kind, LinkKind::Physical) && !l.has_match_rules() && names.rename(&l.id) {
            if let (Some(mac), Some(n)) = (mac, name) {
                out.push(
                    link_path,
                    &format!("{HEADER}\n[Match]\nPermanentMACAddress={mac}\n\n[Link]\nName={n}\n"),
                    0o644,
                );
            }
        }
        // Virtual devices.
        let mut netdev = String::new();
        let nd = Check { file: &netdev_path };
        match &l.kind {
            LinkKind::Bond { params, .. } => {
                netdev_head(&mut netdev, name, "bond", mac, l.mtu);
                let _ = write!(netdev, "\n[Bond]\nMode={}\n", params.mode);
                if let Some(m) = params.miimon {
                    let _ = writeln!(netdev, "MIIMonitorSec={m}ms");
                }
                if let Some(x) = &params.xmit_hash_policy {
                    let x = nd.token(&lf(i, "xmit_hash_policy"), x)?;
                    let _ = writeln!(netdev, "TransmitHashPolicy={x}");
                }
                if let Some(x) = &params.lacp_rate {
                    let x = nd.token(&lf(i, "lacp_rate"), x)?;
                    let _ = writeln!(netdev, "LACPTransmitRate={x}");
                }
                for o in &params.options {
                    let Some(key) = o.spec.networkd else {
                        out.warnings.push(bond_option_warning(
                            l,
                            o.spec.kernel,
                            "systemd-networkd",
                        ));
                        continue;
                    };
                    let v = match (&o.value, o.spec.kind) {
                        (BondValue::Num(n), BondKind::Millis) => format!("{n}ms"),
                        (BondValue::Bool(b), _) => yes(*b).to_string(),
                        _ => bond_value(&nd, i, o, " ")?,
                    };
                    let _ = writeln!(netdev, "{key}={v}");
                }
            }
            LinkKind::Vlan { vlan_id, .. } => {
                netdev_head(&mut netdev, name, "vlan", mac, l.mtu);
                let _ = write!(netdev, "\n[VLAN]\nId={vlan_id}\n");
            }
            LinkKind::Bridge { stp, .. } => {
                netdev_head(&mut netdev, name, "bridge", mac, l.mtu);
                if let Some(stp) = stp {
                    let _ = write!(netdev, "\n[Bridge]\nSTP={}\n", yes(*stp));
                }
            }
            LinkKind::Physical => {}
        }
        if !netdev.is_empty() {
            out.push(netdev_path.clone(), &netdev, 0o644);
        }

        let mut s = format!("{HEADER}\n[Match]\n");
        match (&l.kind, mac, name) {
            (LinkKind::Physical, _, _) if !rules.is_empty() => s.push_str(&rules),
            (LinkKind::Physical, Some(mac), _) => {
                let _ = writeln!(s, "PermanentMACAddress={mac}");
            }
            (_, _, Some(n)) => {
                let _ = writeln!(s, "Name={n}");
            }
            _ => {
                out.warnings.push(format!(
                    "link {:?}: neither a MAC address nor a name to match; not rendered",
                    l.id
                ));
                continue;
            }
        }
        if let Some(mtu) = l.mtu {
            let _ = write!(s, "\n[Link]\nMTUBytes={mtu}\n");
        }
        s.push_str("\n[Network]\n");
        let member = is_member(c, &l.id);
        if let Some(ctl) = c.controller_of(&l.id) {
            // A bond or bridge always has a name (generated when the drive gives none).
            let Some(ctl_name) = names.name(&ctl.id) else {
                out.warnings.push(format!(
                    "link {:?}: its {} {:?} has no name; not rendered",
                    l.id,
                    ctl.kind.name(),
                    ctl.id
                ));
                continue;
            };
            let ctl_name = ck.token(&lf(i, "controller"), ctl_name)?;
            let key = if matches!(ctl.kind, LinkKind::Bond { .. }) {
                "Bond"
            } else {
                "Bridge"
            };
            let _ = writeln!(s, "{key}={ctl_name}");
            if let LinkKind::Bond { params, .. } = &ctl.kind {
                if params.primary.as_deref() == Some(l.id.as_str())
                    || (params.primary.is_some() && params.primary.as_deref() == name)
                {
                    let _ = writeln!(s, "PrimarySlave=yes");
                }
            }
        } else {
            let l3 = &l.l3;
            let dhcp = match (l3.dhcp4, l3.ipv6 == Ipv6Auto::DhcpStateful) {
                (true, true) => "yes",
                (true, false) => "ipv4",
                (false, true) => "ipv6",
                (false, false) => "no",
            };
            let _ = writeln!(s, "DHCP={dhcp}");
            let _ = writeln!(s, "IPv6AcceptRA={}", yes(l3.ipv6.accept_ra()));
            if !l3.is_configured() {
                // A bare parent of VLANs, or a link the drive leaves unconfigured.
                let _ = writeln!(s, "LinkLocalAddressing=no");
            }
            for a in &l3.addresses {
                let _ = writeln!(s, "Address={a}");
            }
            let dns = link_dns(c, l);
            for d in &dns.nameservers {
                let _ = writeln!(s, "DNS={d}");
            }
            if !dns.search.is_empty() {
                let d = ck.tokens(&lf(i, "dns.search"), &dns.search)?;
                let _ = writeln!(s, "Domains={}", d.join(" "));
            }
        }
        // VLANs on this link.
        let from = vlans.partition_point(|&(p, _)| p < l.id.as_str());
        for &(_, j) in vlans[from..].iter().take_while(|&&(p, _)| p == l.id) {
            if let Some(vn) = names.name(&c.links[j].id) {
                let vn = ck.token(&lf(i, "vlans"), vn)?;
                let _ = writeln!(s, "VLAN={vn}");
            }
        }
        if !member {
            for r in &l.l3.routes {
                s.push_str("\n[Route]\n");
                let _ = writeln!(s, "Destination={}", r.to);
                if let Some(g) = r.via {
                    let _ = writeln!(s, "Gateway={g}");
                    if needs_onlink(&l.l3, r) {
                        let _ = writeln!(s, "GatewayOnLink=yes");
                    }
                }
                if let Some(m) = r.metric {
                    let _ = writeln!(s, "Metric={m}");
                }
            }
            match l.l3.ipv6 {
                Ipv6Auto::Slaac => s.push_str("\n[IPv6AcceptRA]\nDHCPv6Client=no\n"),
                Ipv6Auto::DhcpStateless => s.push_str("\n[IPv6AcceptRA]\nDHCPv6Client=yes\n"),
                _ => {}
            }
        }
        out.push(network_path, &s, 0o644);
    }
    out.done()
}

fn netdev_head(
    s: &mut String,
    name: Option<&str>,
    kind: &str,
    mac: Option<&str>,
    mtu: Option<u32>,
) {
    let _ = write!(
        s,
        "{HEADER}\n[NetDev]\nName={}\nKind={kind}\n",
        name.unwrap_or_default()
    );
    if let Some(m) = mac {
        let _ = writeln!(s, "MACAddress={m}");
    }
    if let Some(m) = mtu {
        let _ = writeln!(s, "MTUBytes={m}");
    }
}

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}
