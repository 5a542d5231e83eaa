//! Network: converts every network input (OpenStack `network_data.json`, network config v1 and
//! v2) into the one typed [`NetworkConfig`], names its links against the target's interfaces,
//! and renders it for a backend (systemd-networkd, NetworkManager, ifupdown, netplan, and a
//! PowerShell script for Windows).
//! Parsers and renderers are pure (`parse_*`, `render_*`): no I/O, no clock; reading the
//! target's interfaces and detecting its backend live in [`host`] (read-only). Nothing here
//! writes: rendered files become plan steps that `apply` carries out.

pub mod naming;
pub mod network_data;
pub mod render;
pub mod v1;
pub mod v2;

use std::fmt;
use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

pub use crate::model::network::NetworkConfig;
use crate::model::Report;

/// A network description that cannot be used. Names the file and the field (and, for a
/// dangling reference, both ids).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {field}: {message}")]
pub struct NetError {
    pub file: String,
    pub field: String,
    pub message: String,
}

impl NetError {
    pub fn new(file: &str, field: &str, message: impl Into<String>) -> NetError {
        NetError {
            file: file.to_string(),
            field: field.to_string(),
            message: message.into(),
        }
    }
}

/// Which syntax a network input is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputFormat {
    /// OpenStack `network_data.json` (also `network_info.json`, CloudStack's copy).
    NetworkData,
    /// Network config version 1 or 2, YAML or JSON, optionally under a top-level `network:`.
    NetworkConfig,
}

/// Parses network input bytes of a known format. `file` names the input in warnings and errors.
pub fn parse_network(
    bytes: &[u8],
    format: InputFormat,
    file: &str,
) -> Result<(NetworkConfig, Report), NetError> {
    match format {
        InputFormat::NetworkData => network_data::parse_network_data(bytes, file),
        InputFormat::NetworkConfig => parse_network_config(bytes, file),
    }
}

/// Largest network input accepted (real ones are a few KiB).
pub const MAX_INPUT: usize = 1 << 20;

/// Parses network config v1 or v2 (YAML or JSON): picks the version from the `version` key.
pub fn parse_network_config(bytes: &[u8], file: &str) -> Result<(NetworkConfig, Report), NetError> {
    let doc = load_yaml(bytes, file)?;
    let (doc, _) = unwrap_network_key(doc);
    match doc.get("version").and_then(version_number) {
        Some(1) => v1::parse_v1_value(&doc, file),
        Some(2) => v2::parse_v2_value(&doc, file),
        Some(n) => Err(NetError::new(
            file,
            "version",
            format!("network config version {n} is not supported (1 or 2)"),
        )),
        None => Err(NetError::new(
            file,
            "version",
            "missing or not a number (network config needs version: 1 or 2)",
        )),
    }
}

fn version_number(v: &serde_json::Value) -> Option<u64> {
    match v {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A `network:` wrapper (NoCloud allows it) is removed; returns whether there was one.
pub(crate) fn unwrap_network_key(doc: serde_json::Value) -> (serde_json::Value, bool) {
    match doc {
        serde_json::Value::Object(mut o) if o.len() == 1 && o.contains_key("network") => {
            match o.remove("network") {
                Some(inner @ serde_json::Value::Object(_)) => (inner, true),
                Some(other) => {
                    o.insert("network".into(), other);
                    (serde_json::Value::Object(o), false)
                }
                None => (serde_json::Value::Object(o), false),
            }
        }
        other => (other, false),
    }
}

/// YAML (a superset of the JSON used by some producers) into a JSON value tree, bounded.
pub(crate) fn load_yaml(bytes: &[u8], file: &str) -> Result<serde_json::Value, NetError> {
    if bytes.len() > MAX_INPUT {
        return Err(NetError::new(
            file,
            "",
            format!("{} bytes, more than the {MAX_INPUT} accepted", bytes.len()),
        ));
    }
    let text = std::str::from_utf8(bytes)
        .map_err(|e| NetError::new(file, "", format!("not UTF-8: {e}")))?;
    if text.trim().is_empty() {
        return Err(NetError::new(file, "", "empty"));
    }
    // serde-saphyr's default budget bounds events, depth and alias expansion (alias bombs).
    let v: serde_json::Value = serde_saphyr::from_str(text)
        .map_err(|e| NetError::new(file, "", format!("invalid YAML: {e}")))?;
    if json_depth(&v) > MAX_DEPTH {
        return Err(NetError::new(
            file,
            "",
            format!("nesting deeper than {MAX_DEPTH}"),
        ));
    }
    Ok(v)
}

/// Deepest nesting accepted in a network document: the sources' own bound, counted the same
/// way (arrays and objects). A lower one here (32) refused, as a failed network step, a
/// document the source had accepted (33 to 64 deep); one deeper than this the source refuses
/// itself, naming the file, the position and the bound.
pub(crate) const MAX_DEPTH: usize = crate::source::value::MAX_DEPTH;

/// How deeply arrays and objects nest in `v` (a scalar: 0, `[]`: 1, `[[1]]`: 2).
pub(crate) fn json_depth(v: &serde_json::Value) -> usize {
    // Iterative: the input is untrusted.
    let mut max = 0;
    let mut stack = vec![(v, 0usize)];
    while let Some((v, d)) = stack.pop() {
        match v {
            serde_json::Value::Array(a) => stack.extend(a.iter().map(|x| (x, d + 1))),
            serde_json::Value::Object(o) => stack.extend(o.values().map(|x| (x, d + 1))),
            _ => {}
        }
        if v.is_array() || v.is_object() {
            max = max.max(d + 1);
        }
    }
    max
}

/// A refused drive value for a warning: the value escaped (never raw: it may hold a newline
/// or an escape sequence) and why it does not fit.
pub(crate) fn refused(v: &str, why: impl fmt::Display) -> String {
    format!("{} {why}", crate::model::grammar::Esc(v))
}

/// A field path naming an entry by index and, when it is printable, by its id.
pub(crate) fn with_id(base: &str, what: &str, id: &str) -> String {
    if crate::model::network::check_link_id(id).is_ok() {
        format!("{base} ({what} {id})")
    } else {
        base.to_string()
    }
}

/// A JSON value's kind, for messages (the sources' wording).
pub(crate) use crate::source::value::kind;

/// A scalar as text (numbers and booleans too: YAML and sloppy JSON mix them).
pub(crate) fn scalar(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.trim().to_string()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A boolean the YAML 1.1 way too (`yes`, `on`, `true`, `1`).
pub(crate) fn truthy(v: &serde_json::Value) -> Option<bool> {
    match v {
        serde_json::Value::Bool(b) => Some(*b),
        serde_json::Value::Number(n) => n.as_u64().map(|n| n != 0),
        serde_json::Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "y" | "1" => Some(true),
            "false" | "no" | "off" | "n" | "0" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// An unsigned number given as a number or a numeric string.
pub(crate) fn number(v: &serde_json::Value) -> Option<u64> {
    match v {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// An IP address; a zone suffix (`fe80::1%eth0`) is dropped.
pub fn parse_ip(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    let s = s.split('%').next().unwrap_or(s);
    s.parse().ok()
}

/// Prefix length from a netmask: dotted (`255.255.255.0`), expanded IPv6
/// (`ffff:ffff:ffff:ffff::`) or a plain number (`24`, CloudStack's `"0"`).
pub fn netmask_to_prefix(mask: &str, v6: bool) -> Result<u8, String> {
    let mask = mask.trim().trim_start_matches('/');
    let max = if v6 { 128 } else { 32 };
    if let Ok(n) = mask.parse::<u8>() {
        return if n <= max {
            Ok(n)
        } else {
            Err(format!("prefix length {n} is larger than {max}"))
        };
    }
    let ip: IpAddr = mask
        .parse()
        .map_err(|_| format!("{mask:?} is neither a netmask nor a prefix length"))?;
    let prefix = match ip {
        IpAddr::V4(m) if !v6 => ipnet::ipv4_mask_to_prefix(m),
        IpAddr::V6(m) if v6 => ipnet::ipv6_mask_to_prefix(m),
        _ => {
            return Err(format!(
                "netmask {mask:?} is not an IPv{} mask",
                if v6 { 6 } else { 4 }
            ))
        }
    };
    prefix.map_err(|_| format!("netmask {mask:?} is not contiguous"))
}

/// An address with its prefix: from `addr/prefix`, or `addr` plus a netmask; `default_prefix`
/// when neither gives one (the caller warns).
pub fn address_with_prefix(
    addr: &str,
    netmask: Option<&str>,
) -> Result<(IpNet, PrefixSource), String> {
    let addr = addr.trim();
    let (ip_s, inline) = match addr.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (addr, None),
    };
    let ip = parse_ip(ip_s).ok_or_else(|| format!("{ip_s:?} is not an IP address"))?;
    let v6 = ip.is_ipv6();
    let (prefix, src) = match (inline, netmask.filter(|m| !m.trim().is_empty())) {
        (Some(p), None) => (netmask_to_prefix(p, v6)?, PrefixSource::Inline),
        (Some(p), Some(m)) => {
            let a = netmask_to_prefix(p, v6)?;
            let b = netmask_to_prefix(m, v6)?;
            if a != b {
                return Err(format!(
                    "prefix /{a} in the address and netmask {m:?} (/{b}) disagree"
                ));
            }
            (a, PrefixSource::Inline)
        }
        (None, Some(m)) => (netmask_to_prefix(m, v6)?, PrefixSource::Netmask),
        (None, None) => (if v6 { 64 } else { 24 }, PrefixSource::Default),
    };
    let net = match ip {
        IpAddr::V4(a) => IpNet::V4(Ipv4Net::new(a, prefix).map_err(|e| e.to_string())?),
        IpAddr::V6(a) => IpNet::V6(Ipv6Net::new(a, prefix).map_err(|e| e.to_string())?),
    };
    Ok((net, src))
}

/// Where an address's prefix came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrefixSource {
    Inline,
    Netmask,
    /// Neither: /24 or /64 assumed (warned by the caller).
    Default,
}

/// A route destination from `network` + `netmask`, or `a.b.c.d/n`; host bits are cleared.
pub fn route_destination(network: &str, netmask: Option<&str>) -> Result<IpNet, String> {
    let (net, _) = address_with_prefix(network, netmask)?;
    Ok(net.trunc())
}

/// Makes a parsed config renderable everywhere: every default route gets an explicit metric
/// per family, so the drive's order decides which one wins in every backend. Without one the
/// kernel gives an IPv6 default 1024 (and an IPv4 one 0), so a backup route given a metric
/// here would beat, or lose to, the primary by accident of family. A metric the drive gives
/// is kept; a default route without one, or with one an earlier default of its family already
/// uses (the kernel keeps only one; netplan refuses them; warned, naming the link), gets the
/// next free of 100, 200, ... in drive order.
pub fn normalize(c: &mut NetworkConfig, report: &mut Report, file: &str) {
    for v6 in [false, true] {
        let is_it =
            |r: &crate::model::network::Route| r.is_default() && r.to.addr().is_ipv6() == v6;
        // Explicit metrics are reserved first, so an implicit one never takes a later route's.
        let explicit: Vec<u32> = c
            .links
            .iter()
            .flat_map(|l| l.l3.routes.iter())
            .filter(|r| is_it(r))
            .filter_map(|r| r.metric)
            .collect();
        let mut used: Vec<u32> = Vec::new();
        let mut next = 100u32;
        for l in &mut c.links {
            for r in l.l3.routes.iter_mut() {
                if !is_it(r) {
                    continue;
                }
                let dup = r.metric.is_some_and(|m| used.contains(&m));
                if r.metric.is_none() || dup {
                    while used.contains(&next) || explicit.contains(&next) {
                        next = next.saturating_add(100);
                    }
                    if dup {
                        report.warn(
                            file,
                            &format!("links (id {}).routes", l.id),
                            format!(
                                "a second IPv{} default route (via {}) with the same metric; given metric {next} so both can exist",
                                if v6 { 6 } else { 4 },
                                r.via.map(|v| v.to_string()).unwrap_or_else(|| "on-link".into())
                            ),
                        );
                    }
                    r.metric = Some(next);
                }
                if let Some(m) = r.metric {
                    used.push(m);
                }
            }
        }
    }
}

pub use crate::model::network::XMIT_HASH_POLICIES;

/// Carries the bonding options of one bond entry into `p`: each `(key, option, value)` is the
/// source's key (for warnings), the kernel option name it stands for (`None`: unknown to
/// primer) and the value. A known option is typed by [`crate::model::network::BondOptSpec::parse`]
/// or dropped with a warning naming the field; an unknown one is a warning naming it. Never
/// silence: every key of a bond reaches the model or the report.
pub(crate) fn bond_options<'v>(
    report: &mut Report,
    file: &str,
    field: &str,
    p: &mut crate::model::network::BondParams,
    entries: impl IntoIterator<Item = (&'v str, Option<String>, &'v serde_json::Value)>,
) {
    use crate::model::grammar::Esc;
    for (key, kernel, v) in entries {
        let f = if key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-".contains(c))
        {
            format!("{field}.{key}")
        } else {
            format!("{field}.{}", Esc(key))
        };
        // The kernel's two names of one setting (peer notifications after a failover).
        let kernel = kernel.map(|k| {
            if k == "num_unsol_na" {
                "num_grat_arp".to_string()
            } else {
                k
            }
        });
        match kernel
            .as_deref()
            .and_then(crate::model::network::bond_option)
        {
            Some(spec) => match spec.parse(v, v2::millis) {
                Ok(val) => p.set_option(spec, val),
                // The refused value is shown escaped and cut (a drive cannot forge a log line
                // through it, nor flood the log with a huge list).
                Err(e) => {
                    let shown = match v {
                        serde_json::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    let shown = crate::model::grammar::Esc(&shown);
                    report.warn(file, &f, format!("{shown}: {e}; ignored"))
                }
            },
            None => report.warn(file, &f, "unknown bond option; ignored"),
        }
    }
}

/// The model boundary every parser ends with (and so every renderer relies on). Checks:
/// - every string of the model fits the grammar of what it stands for
///   ([`NetworkConfig::check_grammar`]: link ids, interface names, MACs, references, bond
///   options, search domains). The parsers drop each value that fails with a warning naming
///   its field, so this is an invariant: a failure here is a parser bug, refused as an error
///   rather than rendered;
/// - the references between links: every bond/bridge member and VLAN parent exists, no link
///   is a member of two controllers, VLAN chains end. Errors name both ids.
pub fn validate(c: &NetworkConfig, file: &str) -> Result<(), NetError> {
    use crate::model::network::LinkKind;
    if let Err((field, e)) = c.check_grammar() {
        return Err(NetError::new(file, &field, e.to_string()));
    }
    // One index for every reference (a scan per reference was quadratic in links, a parent
    // chain walked per VLAN cubic: issue 15).
    let index = crate::model::network::LinkIndex::new(c);
    let chains = index.vlan_chains();
    let mut owner: std::collections::BTreeMap<&str, &str> = Default::default();
    for (i, l) in c.links.iter().enumerate() {
        // The parsers drop a second link of an id with a warning; every lookup takes the first.
        if index.position(&l.id) != Some(i) {
            return Err(NetError::new(
                file,
                &format!("links (id {})", l.id),
                format!("a second link with id {:?}", l.id),
            ));
        }
        for m in l.kind.members() {
            if index.link(m).is_none() {
                return Err(NetError::new(
                    file,
                    &format!("links (id {})", l.id),
                    format!(
                        "{} {:?} lists member {m:?}, which is not in links",
                        l.kind.name(),
                        l.id
                    ),
                ));
            }
            if m == &l.id {
                return Err(NetError::new(
                    file,
                    &format!("links (id {})", l.id),
                    format!("{} {:?} lists itself as a member", l.kind.name(), l.id),
                ));
            }
            if let Some(prev) = owner.insert(m, &l.id) {
                return Err(NetError::new(
                    file,
                    &format!("links (id {})", l.id),
                    format!("link {m:?} is a member of both {prev:?} and {:?}", l.id),
                ));
            }
        }
        if let LinkKind::Vlan { parent, .. } = &l.kind {
            if index.link(parent).is_none() {
                return Err(NetError::new(
                    file,
                    &format!("links (id {})", l.id),
                    format!(
                        "vlan {:?} points at parent link {parent:?}, which is not in links",
                        l.id
                    ),
                ));
            }
            // A loop in the parent chain would make every renderer recurse forever.
            if chains.on_cycle[i] {
                return Err(NetError::new(
                    file,
                    &format!("links (id {})", l.id),
                    format!("vlan {:?} is its own ancestor", l.id),
                ));
            }
        }
    }
    Ok(())
}

/// The network backends primer renders for.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Networkd,
    #[value(name = "networkmanager", alias = "nm")]
    #[serde(alias = "nm")]
    NetworkManager,
    Eni,
    Netplan,
    /// A PowerShell script for Windows (`render::powershell`), run by primer's service.
    #[value(name = "powershell", alias = "ps")]
    PowerShell,
}

impl Backend {
    pub const ALL: [Backend; 5] = [
        Backend::Networkd,
        Backend::NetworkManager,
        Backend::Eni,
        Backend::Netplan,
        Backend::PowerShell,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Networkd => "networkd",
            Backend::NetworkManager => "networkmanager",
            Backend::Eni => "eni",
            Backend::Netplan => "netplan",
            Backend::PowerShell => "powershell",
        }
    }
    pub fn parse(s: &str) -> Option<Backend> {
        match s.trim().to_ascii_lowercase().as_str() {
            "networkd" | "systemd-networkd" => Some(Backend::Networkd),
            "networkmanager" | "nm" | "network-manager" => Some(Backend::NetworkManager),
            "eni" | "ifupdown" => Some(Backend::Eni),
            "netplan" => Some(Backend::Netplan),
            "powershell" | "ps" | "windows" => Some(Backend::PowerShell),
            _ => None,
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A network document the source accepts is not refused for its depth here: both count
    /// arrays and objects and stop at the same bound (a lower one here failed the network
    /// step of documents 33 to 64 deep, exit 3). Each document's deepest value is `extra`
    /// of its one link: the link is still read.
    #[test]
    fn the_depth_the_source_accepts_is_accepted() {
        for depth in [1, 2, 32, 33, 62, 63, 64, 65] {
            let inner = format!("{}1{}", "[".repeat(depth - 1), "]".repeat(depth - 1));
            let wrapped = format!("[{inner}]");
            let text = if depth >= 3 {
                let inner = format!("{}1{}", "[".repeat(depth - 3), "]".repeat(depth - 3));
                format!(
                    r#"{{"links":[{{"id":"t","type":"phy","ethernet_mac_address":"52:54:00:aa:00:01","extra":{inner}}}]}}"#
                )
            } else {
                wrapped
            };
            let source = crate::source::value::parse_json("d", "n.json", text.as_bytes());
            assert_eq!(source.is_ok(), depth <= MAX_DEPTH, "{depth}");
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert_eq!(json_depth(&v), depth);
            if depth >= 3 {
                let parsed = network_data::parse_network_data_doc(&v, text.len(), "n.json");
                assert_eq!(parsed.is_ok(), depth <= MAX_DEPTH, "{depth}");
                if let Ok((c, _)) = parsed {
                    assert_eq!(c.links.len(), 1, "{depth}");
                }
            }
        }
        assert_eq!(json_depth(&serde_json::json!(1)), 0);
        assert_eq!(json_depth(&serde_json::json!({"a": [], "b": {"c": 1}})), 2);
    }

    #[test]
    fn prefixes() {
        assert_eq!(netmask_to_prefix("255.255.240.0", false), Ok(20));
        assert_eq!(netmask_to_prefix("ffff:ffff:ffff:ffff::", true), Ok(64));
        assert_eq!(netmask_to_prefix("0", true), Ok(0));
        assert_eq!(netmask_to_prefix("64", true), Ok(64));
        assert!(netmask_to_prefix("255.0.255.0", false).is_err());
        assert!(netmask_to_prefix("255.255.255.0", true).is_err());
        assert!(netmask_to_prefix("33", false).is_err());
        let (n, s) = address_with_prefix("2001:db8::5/64", None).unwrap();
        assert_eq!(
            (n.to_string().as_str(), s),
            ("2001:db8::5/64", PrefixSource::Inline)
        );
        let (n, _) = address_with_prefix("10.0.0.5", Some("255.255.255.0")).unwrap();
        assert_eq!(n.to_string(), "10.0.0.5/24");
        assert!(address_with_prefix("10.0.0.5/24", Some("255.255.0.0")).is_err());
        assert_eq!(
            route_destination("::", Some("0")).unwrap().to_string(),
            "::/0"
        );
        assert_eq!(
            route_destination("10.1.2.3", Some("255.0.0.0"))
                .unwrap()
                .to_string(),
            "10.0.0.0/8"
        );
    }

    #[test]
    fn wrapper_and_version() {
        let (c, _) = parse_network_config(
            b"network:\n  version: 2\n  ethernets:\n    eth0:\n      dhcp4: true\n",
            "network-config",
        )
        .unwrap();
        assert_eq!(c.links.len(), 1);
        let e = parse_network_config(b"version: 3\n", "nc").unwrap_err();
        assert_eq!(e.field, "version");
    }
}
