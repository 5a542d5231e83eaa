//! NetworkManager keyfile renderer: one `primer-<id>.nmconnection` (mode 0600: NetworkManager
//! ignores keyfiles others can read) per link: ethernet, bond, bond port, VLAN, bridge. Pure.
//! Connection UUIDs derive from the link id, so a re-render is byte-identical. A NIC without a
//! known name is matched by `mac-address`. A `conf.d` drop-in keeps NetworkManager from
//! creating its DHCP "Wired connection N" for the NICs the drive configures.

use std::fmt::Write;
use std::net::IpAddr;

use super::{
    bond_option_warning, bond_value, file_ids, lf, link_dns, member_l3_warning, needs_onlink,
    ordered, stable_uuid, Check, RenderError, Rendered, HEADER,
};
use crate::model::network::{Ipv6Auto, LinkKind, NetworkConfig};
use crate::net::naming::Names;

const DIR: &str = "etc/NetworkManager/system-connections";
/// NetworkManager's own configuration drop-in primer owns.
pub const NO_AUTO_DEFAULT: &str = "etc/NetworkManager/conf.d/90-primer.conf";

pub fn render_networkmanager(c: &NetworkConfig, names: &Names) -> Result<Rendered, RenderError> {
    let c = &super::Net::new(c);
    let mut out = Rendered::default();
    let ids = file_ids(c);
    for (i, l) in ordered(c) {
        let path = format!("{DIR}/primer-{}.nmconnection", ids[i]);
        // Every drive-derived value is one safe word of the keyfile, or nothing is rendered.
        let ck = Check { file: &path };
        let name = names
            .name(&l.id)
            .map(|n| ck.token(&lf(i, "name"), n))
            .transpose()?;
        let conn_id = format!("primer-{}", ids[i]);
        let conn_id = ck.token(&lf(i, "id"), &conn_id)?;
        let mac = l
            .mac
            .as_deref()
            .map(|m| ck.token(&lf(i, "mac"), m))
            .transpose()?;
        if let Some(w) = member_l3_warning(c, l) {
            out.warnings.push(w);
        }
        let ty = match l.kind {
            LinkKind::Physical => "ethernet",
            LinkKind::Bond { .. } => "bond",
            LinkKind::Vlan { .. } => "vlan",
            LinkKind::Bridge { .. } => "bridge",
        };
        if matches!(l.kind, LinkKind::Physical) && mac.is_none() && name.is_none() {
            out.warnings.push(format!(
                "link {:?}: neither a MAC address nor a name to match; not rendered",
                l.id
            ));
            continue;
        }
        let mut s = format!(
            "{HEADER}\n[connection]\nid={conn_id}\nuuid={}\ntype={ty}\n",
            stable_uuid(&l.id)
        );
        if let Some(n) = name {
            // A NIC that is still to be renamed is matched by MAC alone.
            if !(matches!(l.kind, LinkKind::Physical) && names.rename(&l.id)) {
                let _ = writeln!(s, "interface-name={n}");
            }
        }
        s.push_str("autoconnect=true\n");
        let ctl = c.controller_of(&l.id);
        if let Some(ctl) = ctl {
            let kind = if matches!(ctl.kind, LinkKind::Bond { .. }) {
                "bond"
            } else {
                "bridge"
            };
            let _ = writeln!(s, "master={}\nslave-type={kind}", stable_uuid(&ctl.id));
        }
        if matches!(l.kind, LinkKind::Bond { .. } | LinkKind::Bridge { .. }) {
            // Bring the ports up with the controller.
            s.push_str("autoconnect-slaves=1\n");
        }
        // Link layer: MAC match for a NIC, a set MAC for a virtual link, MTU.
        let mut eth = String::new();
        match (&l.kind, mac) {
            (LinkKind::Physical, Some(m)) => {
                let _ = writeln!(eth, "mac-address={}", m.to_ascii_uppercase());
            }
            (_, Some(m)) => {
                let _ = writeln!(eth, "cloned-mac-address={}", m.to_ascii_uppercase());
            }
            _ => {}
        }
        if let Some(mtu) = l.mtu {
            let _ = writeln!(eth, "mtu={mtu}");
        }
        if !eth.is_empty() || matches!(l.kind, LinkKind::Physical) {
            let _ = write!(s, "\n[ethernet]\n{eth}");
        }
        match &l.kind {
            LinkKind::Bond { params, .. } => {
                let _ = write!(s, "\n[bond]\nmode={}\n", params.mode);
                if let Some(m) = params.miimon {
                    let _ = writeln!(s, "miimon={m}");
                }
                if let Some(x) = &params.xmit_hash_policy {
                    let x = ck.token(&lf(i, "xmit_hash_policy"), x)?;
                    let _ = writeln!(s, "xmit_hash_policy={x}");
                }
                if let Some(x) = &params.lacp_rate {
                    let x = ck.token(&lf(i, "lacp_rate"), x)?;
                    let _ = writeln!(s, "lacp_rate={x}");
                }
                // NetworkManager takes every bonding option by its kernel name.
                for o in &params.options {
                    if !o.spec.nm {
                        out.warnings
                            .push(bond_option_warning(l, o.spec.kernel, "NetworkManager"));
                        continue;
                    }
                    let v = bond_value(&ck, i, o, ",")?;
                    let _ = writeln!(s, "{}={v}", o.spec.kernel);
                }
                // The primary member's interface name; a member without a known name (matched
                // by MAC) cannot be named here, and its id is no interface name.
                if let Some(p) = params.primary.as_deref() {
                    match names.name(p) {
                        Some(pn) => {
                            let pn = ck.token(&lf(i, "primary"), pn)?;
                            let _ = writeln!(s, "primary={pn}");
                        }
                        None => out.warnings.push(format!(
                            "bond {:?}: primary {p:?} has no interface name; left to the driver",
                            l.id
                        )),
                    }
                }
            }
            LinkKind::Vlan { parent, vlan_id } => {
                // The parent's interface name when known, else its connection (matched by MAC).
                let p = match names.name(parent).filter(|_| !names.rename(parent)) {
                    Some(n) => ck.token(&lf(i, "parent"), n)?.to_string(),
                    None => stable_uuid(parent),
                };
                let _ = write!(s, "\n[vlan]\nid={vlan_id}\nparent={p}\n");
            }
            LinkKind::Bridge { stp, .. } => {
                if let Some(stp) = stp {
                    let _ = write!(s, "\n[bridge]\nstp={stp}\n");
                }
            }
            LinkKind::Physical => {}
        }
        if ctl.is_none() {
            ip_sections(&mut s, c, l, &ck, i)?;
        }
        out.push(path, &s, 0o600);
    }
    // NetworkManager gives every ethernet device that no profile matches *when the device
    // appears* an in-memory DHCP profile ("Wired connection 1"). Seen in the guest: that
    // profile won the NIC over the drive's static one, leaving DHCP and the default MTU. The
    // NICs the drive configures must only ever get the drive's profile. `+=` appends to
    // whatever the image's own configuration lists instead of replacing it.
    let ck = Check {
        file: NO_AUTO_DEFAULT,
    };
    let mut macs: Vec<String> = Vec::new();
    for (i, l) in c.links.iter().enumerate() {
        if let (LinkKind::Physical, Some(m)) = (&l.kind, l.mac.as_deref()) {
            let m = ck.token(&lf(i, "mac"), m)?;
            macs.push(format!("mac:{}", m.to_ascii_lowercase()));
        }
    }
    if !macs.is_empty() {
        out.push(
            NO_AUTO_DEFAULT.to_string(),
            &format!(
                "{HEADER}\n# No automatic DHCP profile for the NICs of the drive's network data.\n[main]\nno-auto-default+={}\n",
                macs.join(",")
            ),
            0o644,
        );
    }
    out.done()
}

fn ip_sections(
    s: &mut String,
    c: &super::Net,
    l: &crate::model::network::Link,
    ck: &Check,
    i: usize,
) -> Result<(), RenderError> {
    let l3 = &l.l3;
    let dns = link_dns(c, l);
    for v6 in [false, true] {
        let addrs: Vec<_> = l3
            .addresses
            .iter()
            .filter(|a| a.addr().is_ipv6() == v6)
            .collect();
        let method = if v6 {
            match l3.ipv6 {
                Ipv6Auto::Off if addrs.is_empty() => "disabled",
                Ipv6Auto::Off => "manual",
                // NetworkManager's `auto` follows the router advertisement's M and O flags:
                // SLAAC alone, stateless DHCPv6, or stateful DHCPv6.
                _ => "auto",
            }
        } else if l3.dhcp4 {
            "auto"
        } else if addrs.is_empty() {
            "disabled"
        } else {
            "manual"
        };
        let _ = write!(
            s,
            "\n[{}]\nmethod={method}\n",
            if v6 { "ipv6" } else { "ipv4" }
        );
        if v6 && method != "disabled" {
            // The address SLAAC gives is the one the cloud computed (EUI-64), not a random one.
            s.push_str("addr-gen-mode=eui64\n");
        }
        for (k, a) in addrs.iter().enumerate() {
            let _ = writeln!(s, "address{}={a}", k + 1);
        }
        let routes: Vec<_> = l3
            .routes
            .iter()
            .filter(|r| r.to.addr().is_ipv6() == v6)
            .collect();
        for (k, r) in routes.iter().enumerate() {
            // NetworkManager takes the default route as an ordinary route too.
            let mut line = format!("route{}={}", k + 1, r.to);
            match (r.via, r.metric) {
                (Some(g), Some(m)) => line.push_str(&format!(",{g},{m}")),
                (Some(g), None) => line.push_str(&format!(",{g}")),
                (None, Some(m)) => line.push_str(&format!(",{},{m}", unspecified(v6))),
                (None, None) => {}
            }
            let _ = writeln!(s, "{line}");
            if needs_onlink(l3, r) {
                let _ = writeln!(s, "route{}_options=onlink=true", k + 1);
            }
        }
        if method != "disabled" {
            let servers: Vec<String> = dns
                .nameservers
                .iter()
                .filter(|a| a.is_ipv6() == v6)
                .map(|a| a.to_string())
                .collect();
            if !servers.is_empty() {
                let _ = writeln!(s, "dns={};", servers.join(";"));
            }
            if !dns.search.is_empty() && (!v6 || !l3.has_v4()) {
                let d = ck.tokens(&lf(i, "dns.search"), &dns.search)?;
                let _ = writeln!(s, "dns-search={};", d.join(";"));
            }
            if l3.has_v4() && l3.has_v6() {
                // Dual stack: the connection is up when either family is.
                s.push_str("may-fail=true\n");
            }
        }
    }
    Ok(())
}

fn unspecified(v6: bool) -> IpAddr {
    if v6 {
        IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)
    } else {
        IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)
    }
}
