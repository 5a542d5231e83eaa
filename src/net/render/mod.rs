//! Renderers: the network model plus the chosen names into the files of one backend. Pure
//! (`render_*`): no I/O, deterministic (source order, no clock). Every file starts with the
//! [`HEADER`] line, which is how primer recognises its own files when it removes stale ones; a
//! renderer never produces a file outside [`Owned`] for its backend.

pub mod eni;
pub mod netplan;
pub mod networkd;
pub mod networkmanager;

use std::net::IpAddr;

use sha2::{Digest, Sha256};

use super::naming::Names;
use super::Backend;
use crate::model::network::{Dns, Link, LinkKind, NetworkConfig, Route, L3};

/// First line of every file primer renders (with the comment character of `#`, which all four
/// syntaxes accept).
pub const HEADER: &str = "# managed by primer: generated from the config drive's network data; local edits are kept until that data changes";

/// One rendered file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedFile {
    /// Relative to the target root (`etc/systemd/network/10-primer-x.network`).
    pub path: String,
    pub content: String,
    pub mode: u32,
}

/// The files of one backend and what could not be rendered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rendered {
    pub files: Vec<RenderedFile>,
    /// Each names the link (id) it is about.
    pub warnings: Vec<String>,
}

/// Choices that depend on the target, not on the drive.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RenderOptions {
    /// netplan `renderer:` (`NetworkManager` on a NetworkManager system); `None`: netplan's
    /// default (networkd).
    pub netplan_renderer: Option<String>,
    /// ifupdown: also write `/etc/resolv.conf` (no resolvconf to act on `dns-*` lines, and
    /// the file is not a symlink managed by something else).
    pub eni_resolv_conf: bool,
}

/// Where a backend's files live and how primer's are named: a file is primer's when it is in
/// `dir`, its name starts with `prefix` (or equals it, for single-file backends) and its first
/// line is [`HEADER`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owned {
    pub dir: &'static str,
    pub prefix: &'static str,
    /// Other single files the backend may write (`etc/resolv.conf` for ifupdown).
    pub extra: &'static [&'static str],
}

pub fn owned(b: Backend) -> Owned {
    match b {
        Backend::Networkd => Owned {
            dir: "etc/systemd/network",
            prefix: "10-primer-",
            extra: &[],
        },
        Backend::NetworkManager => Owned {
            dir: "etc/NetworkManager/system-connections",
            prefix: "primer-",
            extra: &[networkmanager::NO_AUTO_DEFAULT],
        },
        Backend::Eni => Owned {
            dir: "etc/network/interfaces.d",
            prefix: "primer",
            extra: &["etc/resolv.conf"],
        },
        Backend::Netplan => Owned {
            dir: "etc/netplan",
            prefix: "50-primer.yaml",
            extra: &[],
        },
    }
}

/// Renders `c` for `backend`.
pub fn render(backend: Backend, c: &NetworkConfig, names: &Names, o: &RenderOptions) -> Rendered {
    match backend {
        Backend::Networkd => networkd::render_networkd(c, names),
        Backend::NetworkManager => networkmanager::render_networkmanager(c, names),
        Backend::Eni => eni::render_eni(c, names, o),
        Backend::Netplan => netplan::render_netplan(c, names, o),
    }
}

/// A link id as a file name part: `[A-Za-z0-9_.-]`, others as `_`; never empty, never a dot
/// name.
pub fn safe_id(id: &str) -> String {
    let s: String = id
        .chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() || s.starts_with('.') {
        format!("link{s}")
    } else {
        s
    }
}

/// File-name parts for every link, unique even when two ids map to the same safe form.
pub(crate) fn file_ids(c: &NetworkConfig) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(c.links.len());
    for l in &c.links {
        let base = safe_id(&l.id);
        let mut cand = base.clone();
        let mut i = 1;
        while out.contains(&cand) {
            cand = format!("{base}-{i}");
            i += 1;
        }
        out.push(cand);
    }
    out
}

/// DNS a link's configuration carries: its own, then the machine-wide servers. Only links with
/// layer-3 configuration carry DNS (a bond member or a bare VLAN parent cannot use it).
pub(crate) fn link_dns(c: &NetworkConfig, l: &Link) -> Dns {
    if !l.l3.is_configured() || c.controller_of(&l.id).is_some() {
        return Dns::default();
    }
    l.l3.dns.merged(&c.dns)
}

/// Whether a route's gateway lies outside every static subnet of its family on the link (the
/// kernel refuses such a route unless it is marked on-link). DHCP links are left alone: the
/// lease may cover the gateway.
pub(crate) fn needs_onlink(l3: &L3, r: &Route) -> bool {
    let Some(gw) = r.via else { return false };
    if matches!(gw, IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80) {
        return false;
    }
    let dynamic = if gw.is_ipv6() {
        l3.ipv6 != crate::model::network::Ipv6Auto::Off
    } else {
        l3.dhcp4
    };
    let statics: Vec<_> = l3
        .addresses
        .iter()
        .filter(|a| a.addr().is_ipv6() == gw.is_ipv6())
        .collect();
    !dynamic && !statics.is_empty() && !statics.iter().any(|a| a.contains(&gw))
}

/// Whether a link is enslaved to a bond or bridge (it carries no layer-3 configuration).
pub(crate) fn is_member(c: &NetworkConfig, id: &str) -> bool {
    c.controller_of(id).is_some()
}

/// A warning for layer-3 configuration on a member link, which is ignored.
pub(crate) fn member_l3_warning(c: &NetworkConfig, l: &Link) -> Option<String> {
    let ctl = c.controller_of(&l.id)?;
    l.l3.is_configured().then(|| {
        format!(
            "link {:?}: member of {} {:?}; its own addresses are ignored",
            l.id,
            ctl.kind.name(),
            ctl.id
        )
    })
}

/// A deterministic UUID (version 5 layout) for a NetworkManager connection of a link id, so a
/// re-render gives byte-identical files.
pub fn stable_uuid(id: &str) -> String {
    let h = Sha256::digest(format!("primer-network-link:{id}").as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&h[..16]);
    b[6] = (b[6] & 0x0f) | 0x50;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// Links in dependency order: physical, then bonds and bridges, then VLANs (a VLAN on a VLAN
/// after its parent), keeping source order within each group.
pub(crate) fn ordered(c: &NetworkConfig) -> Vec<(usize, &Link)> {
    let rank = |l: &Link| match l.kind {
        LinkKind::Physical => 0,
        LinkKind::Bond { .. } | LinkKind::Bridge { .. } => 1,
        LinkKind::Vlan { .. } => 2,
    };
    let mut v: Vec<(usize, &Link)> = c.links.iter().enumerate().collect();
    v.sort_by_key(|(i, l)| (rank(l), vlan_depth(c, l), *i));
    v
}

fn vlan_depth(c: &NetworkConfig, l: &Link) -> usize {
    let mut d = 0;
    let mut cur = l;
    while let LinkKind::Vlan { parent, .. } = &cur.kind {
        match c.link(parent) {
            Some(p) if d <= c.links.len() => {
                d += 1;
                cur = p;
            }
            _ => break,
        }
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_are_stable_and_well_formed() {
        let u = stable_uuid("tap0");
        assert_eq!(u, stable_uuid("tap0"));
        assert_ne!(u, stable_uuid("tap1"));
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "5");
        assert_eq!(safe_id("a/b c"), "a_b_c");
        assert_eq!(safe_id(".."), "link..");
    }
}
