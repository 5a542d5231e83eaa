//! OpenStack `network_data.json` (nova, Ironic, CloudStack; also glean's `network_info.json`)
//! into the network model. Pure. Liberal, as FORMATS.md §1 asks: about half of the real files
//! fail nova's schema, so anything usable is kept and everything dropped is a warning naming
//! the file and field. Errors only for what cannot be rendered safely: a network or a bond or
//! VLAN pointing at a link that does not exist (the error names both ids).

use serde_json::{Map, Value};

use std::collections::BTreeSet;

use super::{
    address_with_prefix, kind, number, parse_ip, refused, route_destination, scalar, with_id,
    NetError, PrefixSource,
};
use crate::model::grammar::Esc;
use crate::model::network::{
    check_ifname, check_link_id, normalize_mac, BondMode, BondParams, Dns, Ipv6Auto, Link,
    LinkKind, NetworkConfig, Route,
};
use crate::model::Report;

/// The id of a link object as given (for the set of dropped links).
fn link_id_of(o: &Map<String, Value>) -> String {
    o.get("id").and_then(scalar).unwrap_or_default()
}

/// Link types nova and others use for a plain NIC (FORMATS.md §1).
const PHYSICAL_TYPES: &[&str] = &[
    "phy",
    "bridge",
    "dvs",
    "hw_veb",
    "hyperv",
    "ovs",
    "tap",
    "vhostuser",
    "vif",
    "ethernet",
    "macvtap",
    "vdpa",
    "agilio_ovs",
];

/// Parses `network_data.json` bytes. `file` names the input in warnings and errors.
pub fn parse_network_data(bytes: &[u8], file: &str) -> Result<(NetworkConfig, Report), NetError> {
    if bytes.len() > super::MAX_INPUT {
        return Err(NetError::new(
            file,
            "",
            format!(
                "{} bytes, more than the {} accepted",
                bytes.len(),
                super::MAX_INPUT
            ),
        ));
    }
    let v: Value = serde_json::from_slice(bytes).map_err(|e| {
        NetError::new(
            file,
            "",
            format!(
                "invalid JSON at line {}, column {}: {e}",
                e.line(),
                e.column()
            ),
        )
    })?;
    parse_network_data_doc(&v, bytes.len(), file)
}

/// Parses a `network_data.json` document a source already decoded, with the checks
/// [`parse_network_data`] makes of bytes: the size of its JSON text (`len`: the document as
/// `serde_json` writes it, which the caller writes or measures) is bounded like bytes are,
/// and its nesting is bounded. The same result as serialising it and parsing the text,
/// without the second JSON reading.
pub fn parse_network_data_doc(
    v: &Value,
    len: usize,
    file: &str,
) -> Result<(NetworkConfig, Report), NetError> {
    if len > super::MAX_INPUT {
        return Err(NetError::new(
            file,
            "",
            format!("{len} bytes, more than the {} accepted", super::MAX_INPUT),
        ));
    }
    if super::json_depth(v) > super::MAX_DEPTH {
        return Err(NetError::new(
            file,
            "",
            format!("nesting deeper than {}", super::MAX_DEPTH),
        ));
    }
    parse_network_data_value(v, file)
}

/// Parses an already decoded `network_data.json` document.
pub fn parse_network_data_value(
    v: &Value,
    file: &str,
) -> Result<(NetworkConfig, Report), NetError> {
    let Value::Object(top) = v else {
        return Err(NetError::new(
            file,
            "",
            format!("top level is {}, not an object", kind(v)),
        ));
    };
    let mut p = Parser {
        file,
        report: Report::default(),
        config: NetworkConfig::default(),
        dropped: BTreeSet::new(),
        ids: std::collections::HashMap::new(),
    };
    for (i, l) in list(top, "links", file, &mut p.report).iter().enumerate() {
        p.link(i, l);
    }
    let networks = list(top, "networks", file, &mut p.report);
    if !networks.is_empty() {
        for (i, l) in p.config.links.iter().enumerate() {
            p.ids.entry(l.id.clone()).or_insert(i);
        }
    }
    for (i, n) in networks.iter().enumerate() {
        p.network(i, n)?;
    }
    p.ids = std::collections::HashMap::new();
    for (i, s) in list(top, "services", file, &mut p.report)
        .iter()
        .enumerate()
    {
        let mut dns = std::mem::take(&mut p.config.dns);
        p.service(&format!("services[{i}]"), s, &mut dns);
        p.config.dns = dns;
    }
    for k in top.keys() {
        if !matches!(k.as_str(), "links" | "networks" | "services") {
            p.report.warn(file, k, "unknown top-level key; ignored");
        }
    }
    super::validate(&p.config, file)?;
    super::normalize(&mut p.config, &mut p.report, file);
    Ok((p.config, p.report))
}

fn list<'a>(top: &'a Map<String, Value>, key: &str, file: &str, r: &mut Report) -> &'a [Value] {
    match top.get(key) {
        Some(Value::Array(a)) => a,
        None | Some(Value::Null) => &[],
        Some(other) => {
            r.warn(
                file,
                key,
                format!("expected a list, found {}; ignored", kind(other)),
            );
            &[]
        }
    }
}

struct Parser<'a> {
    file: &'a str,
    report: Report,
    config: NetworkConfig,
    /// Ids of links dropped for an unusable value: a network on one is dropped too (with a
    /// warning) instead of failing the whole file.
    dropped: BTreeSet<String>,
    /// Link id -> where its first link is, built once the links are read (networks name
    /// their link by id: a scan of the links per network was quadratic; issue 15).
    ids: std::collections::HashMap<String, usize>,
}

impl Parser<'_> {
    fn warn(&mut self, field: &str, msg: impl Into<String>) {
        self.report.warn(self.file, field, msg);
    }

    /// A string field (numbers accepted as text), `None` when absent or null.
    fn text(&mut self, o: &Map<String, Value>, field: &str, key: &str) -> Option<String> {
        match o.get(key)? {
            Value::Null => None,
            v => match scalar(v) {
                Some(s) if !s.is_empty() => Some(s),
                Some(_) => None,
                None => {
                    self.warn(
                        &format!("{field}.{key}"),
                        format!("expected a string, found {}; ignored", kind(v)),
                    );
                    None
                }
            },
        }
    }

    fn mac(&mut self, o: &Map<String, Value>, field: &str, key: &str) -> Option<String> {
        let raw = self.text(o, field, key)?;
        match normalize_mac(&raw) {
            Some(m) => {
                if u8::from_str_radix(&m[..2], 16).is_ok_and(|b| b & 1 == 1) {
                    self.warn(
                        &format!("{field}.{key}"),
                        format!("{m} is a multicast address; no NIC can have it"),
                    );
                }
                Some(m)
            }
            None => {
                self.warn(
                    &format!("{field}.{key}"),
                    format!("{raw:?} is not a MAC address; ignored"),
                );
                None
            }
        }
    }

    fn link(&mut self, i: usize, v: &Value) {
        let field = format!("links[{i}]");
        let Value::Object(o) = v else {
            self.warn(
                &field,
                format!("expected an object, found {}; ignored", kind(v)),
            );
            return;
        };
        let Some(id) = self.text(o, &field, "id") else {
            self.warn(&field, "link without an id; ignored");
            return;
        };
        if let Err(e) = check_link_id(&id) {
            self.warn(
                &format!("{field}.id"),
                format!("{}; link ignored", refused(&id, e)),
            );
            self.dropped.insert(id);
            return;
        }
        let field = format!("links[{i}] (id {id})");
        if self.config.link(&id).is_some() {
            self.warn(&field, format!("a second link with id {id:?}; ignored"));
            return;
        }
        let ty = self.text(o, &field, "type").map(|t| t.to_ascii_lowercase());
        let kind = match ty.as_deref() {
            Some("bond") => {
                let mode = match self.text(o, &field, "bond_mode") {
                    Some(m) => BondMode::parse(&m).unwrap_or_else(|| {
                        self.warn(
                            &format!("{field}.bond_mode"),
                            format!(
                                "unknown bond mode {m:?}; using balance-rr (the kernel's default)"
                            ),
                        );
                        BondMode::BalanceRr
                    }),
                    None => {
                        self.warn(
                            &format!("{field}.bond_mode"),
                            "missing; using balance-rr (the kernel's default)",
                        );
                        BondMode::BalanceRr
                    }
                };
                let mut params = BondParams::new(mode);
                params.miimon = self.u32_field(o, &field, "bond_miimon", 0, 1 << 30);
                params.xmit_hash_policy = self
                    .text(o, &field, "bond_xmit_hash_policy")
                    .and_then(|x| self.hash_policy(&field, &x));
                params.lacp_rate = self
                    .text(o, &field, "bond_lacp_rate")
                    .and_then(|x| self.lacp_rate(&field, &x));
                if let Some(x) = self.text(o, &field, "bond_primary") {
                    params.primary = match check_link_id(&x) {
                        Ok(()) => Some(x),
                        Err(e) => {
                            self.warn(
                                &format!("{field}.bond_primary"),
                                format!("{}; ignored", refused(&x, e)),
                            );
                            None
                        }
                    };
                }
                // Every other `bond_*` key nova and Ironic emit, by its kernel name, or a
                // warning naming it.
                let typed = [
                    "bond_mode",
                    "bond_links",
                    "bond_miimon",
                    "bond_xmit_hash_policy",
                    "bond_lacp_rate",
                    "bond_primary",
                ];
                let rest: Vec<(&str, Option<String>, &Value)> = o
                    .iter()
                    .filter(|(k, v)| !typed.contains(&k.as_str()) && !v.is_null())
                    .filter_map(|(k, v)| {
                        let opt = k.strip_prefix("bond_")?;
                        Some((k.as_str(), Some(opt.to_string()), v))
                    })
                    .collect();
                let file = self.file;
                super::bond_options(&mut self.report, file, &field, &mut params, rest);
                let members = self.id_list(o, &field, "bond_links");
                if members.is_empty() {
                    self.warn(&format!("{field}.bond_links"), "bond without members");
                }
                LinkKind::Bond { members, params }
            }
            Some("vlan") => {
                let Some(parent) = self.text(o, &field, "vlan_link") else {
                    self.warn(
                        &format!("{field}.vlan_link"),
                        "VLAN without a parent link; ignored",
                    );
                    return;
                };
                if let Err(e) = check_link_id(&parent) {
                    self.warn(
                        &format!("{field}.vlan_link"),
                        format!("{}; VLAN ignored", refused(&parent, e)),
                    );
                    self.dropped.insert(link_id_of(o));
                    return;
                }
                let Some(vlan_id) = self.u32_field(o, &field, "vlan_id", 0, 4094) else {
                    self.warn(
                        &format!("{field}.vlan_id"),
                        "VLAN without a usable id (0-4094); ignored",
                    );
                    return;
                };
                LinkKind::Vlan {
                    parent,
                    vlan_id: vlan_id as u16,
                }
            }
            Some(t) if PHYSICAL_TYPES.contains(&t) => LinkKind::Physical,
            Some(t) => {
                self.warn(
                    &format!("{field}.type"),
                    format!("unknown link type {t:?}; treated as a physical NIC"),
                );
                LinkKind::Physical
            }
            None => {
                self.warn(
                    &format!("{field}.type"),
                    "missing link type; treated as a physical NIC",
                );
                LinkKind::Physical
            }
        };
        let mut link = Link::new(id, kind);
        link.mac = match link.kind {
            LinkKind::Vlan { .. } => self
                .mac(o, &field, "vlan_mac_address")
                .or_else(|| self.mac(o, &field, "ethernet_mac_address")),
            _ => self.mac(o, &field, "ethernet_mac_address"),
        };
        link.mtu = self.u32_field(o, &field, "mtu", 68, 65535);
        if let Some(name) = self.text(o, &field, "name") {
            match check_ifname(&name) {
                Ok(()) => link.name = Some(name),
                Err(e) => self.warn(
                    &format!("{field}.name"),
                    format!("{}: not a valid interface name; ignored", refused(&name, e)),
                ),
            }
        }
        if matches!(link.kind, LinkKind::Physical) && link.mac.is_none() && link.name.is_none() {
            self.warn(
                &field,
                "physical link with neither a MAC address nor a name cannot be matched to a NIC",
            );
        }
        self.config.links.push(link);
    }

    fn u32_field(
        &mut self,
        o: &Map<String, Value>,
        field: &str,
        key: &str,
        min: u32,
        max: u32,
    ) -> Option<u32> {
        let v = o.get(key)?;
        if v.is_null() {
            return None;
        }
        match number(v) {
            Some(n) if n >= u64::from(min) && n <= u64::from(max) => Some(n as u32),
            _ => {
                self.warn(
                    &format!("{field}.{key}"),
                    format!("{v} is not a number in {min}..{max}; ignored"),
                );
                None
            }
        }
    }

    fn id_list(&mut self, o: &Map<String, Value>, field: &str, key: &str) -> Vec<String> {
        match o.get(key) {
            Some(Value::Array(a)) => {
                let mut out: Vec<String> = Vec::new();
                for (j, x) in a.iter().enumerate() {
                    match scalar(x) {
                        Some(s) if s.is_empty() || out.contains(&s) => {}
                        Some(s) => match check_link_id(&s) {
                            Ok(()) => out.push(s),
                            Err(e) => self.warn(
                                &format!("{field}.{key}[{j}]"),
                                format!("{}; member ignored", refused(&s, e)),
                            ),
                        },
                        None => self.warn(
                            &format!("{field}.{key}[{j}]"),
                            format!("expected a link id, found {}; ignored", kind(x)),
                        ),
                    }
                }
                out
            }
            None | Some(Value::Null) => Vec::new(),
            Some(other) => {
                self.warn(
                    &format!("{field}.{key}"),
                    format!("expected a list, found {}; ignored", kind(other)),
                );
                Vec::new()
            }
        }
    }

    fn hash_policy(&mut self, field: &str, x: &str) -> Option<String> {
        let lower = x.to_ascii_lowercase();
        if super::XMIT_HASH_POLICIES.contains(&lower.as_str()) {
            Some(lower)
        } else {
            self.warn(
                &format!("{field}.bond_xmit_hash_policy"),
                format!("unknown policy {}; ignored", Esc(x)),
            );
            None
        }
    }

    fn lacp_rate(&mut self, field: &str, x: &str) -> Option<String> {
        match x.to_ascii_lowercase().as_str() {
            "fast" | "1" => Some("fast".into()),
            "slow" | "0" => Some("slow".into()),
            _ => {
                self.warn(
                    &format!("{field}.bond_lacp_rate"),
                    format!("{x:?} is neither fast nor slow; ignored"),
                );
                None
            }
        }
    }

    fn network(&mut self, i: usize, v: &Value) -> Result<(), NetError> {
        let field = format!("networks[{i}]");
        let Value::Object(o) = v else {
            self.warn(
                &field,
                format!("expected an object, found {}; ignored", kind(v)),
            );
            return Ok(());
        };
        let id = self
            .text(o, &field, "id")
            .unwrap_or_else(|| format!("#{i}"));
        let field = with_id(&format!("networks[{i}]"), "id", &id);
        let Some(link_id) = self.text(o, &field, "link") else {
            return Err(NetError::new(
                self.file,
                &format!("{field}.link"),
                format!("network {} names no link", Esc(&id)),
            ));
        };
        if let Err(e) = check_link_id(&link_id) {
            self.warn(
                &format!("{field}.link"),
                format!("{}; network ignored", refused(&link_id, e)),
            );
            return Ok(());
        }
        let at = self.ids.get(&link_id).copied();
        if self.dropped.contains(&link_id) && at.is_none() {
            self.warn(
                &format!("{field}.link"),
                format!("link {link_id:?} was dropped (see above); network ignored"),
            );
            return Ok(());
        }
        let Some(li) = at else {
            return Err(NetError::new(
                self.file,
                &format!("{field}.link"),
                format!(
                    "network {} points at link {link_id:?}, which is not in links",
                    Esc(&id)
                ),
            ));
        };
        let ty = self
            .text(o, &field, "type")
            .map(|t| t.to_ascii_lowercase())
            .unwrap_or_default();
        let mut l3 = std::mem::take(&mut self.config.links[li].l3);
        let v6_mode = |m: Ipv6Auto, l3: &mut crate::model::network::L3, p: &mut Self| {
            if l3.ipv6 != Ipv6Auto::Off && l3.ipv6 != m {
                p.warn(
                    &format!("{field}.type"),
                    format!(
                        "link {link_id:?} already has IPv6 mode {:?}; the stronger of the two is kept",
                        l3.ipv6
                    ),
                );
            }
            l3.ipv6 = l3.ipv6.max_mode(m);
        };
        match ty.as_str() {
            "ipv4" | "ipv6" => {
                let v6 = ty == "ipv6";
                match self.text(o, &field, "ip_address") {
                    Some(ip) => {
                        let mask = self.text(o, &field, "netmask");
                        match address_with_prefix(&ip, mask.as_deref()) {
                            Ok((net, src)) if net.addr().is_ipv6() == v6 => {
                                if src == PrefixSource::Default {
                                    self.warn(
                                        &format!("{field}.netmask"),
                                        format!("missing; /{} assumed", net.prefix_len()),
                                    );
                                }
                                if net.prefix_len() == 0 {
                                    self.warn(
                                        &format!("{field}.netmask"),
                                        format!("{net}: a prefix of 0 on an address; using a host prefix"),
                                    );
                                    let host = if v6 { 128 } else { 32 };
                                    if let Ok(n) = ipnet::IpNet::new(net.addr(), host) {
                                        l3.addresses.push(n);
                                    }
                                } else if !l3.addresses.contains(&net) {
                                    l3.addresses.push(net);
                                }
                            }
                            Ok((net, _)) => self.warn(
                                &format!("{field}.ip_address"),
                                format!("{net} does not match network type {ty}; ignored"),
                            ),
                            Err(e) => self.warn(
                                &format!("{field}.ip_address"),
                                format!("{e}; address ignored"),
                            ),
                        }
                    }
                    None => self.warn(
                        &format!("{field}.ip_address"),
                        format!("static {ty} network without an address"),
                    ),
                }
            }
            "ipv4_dhcp" => l3.dhcp4 = true,
            "ipv6_dhcp" | "ipv6_dhcpv6-stateful" | "ipv6_dhcpv6_stateful" => {
                v6_mode(Ipv6Auto::DhcpStateful, &mut l3, self)
            }
            "ipv6_dhcpv6-stateless" | "ipv6_dhcpv6_stateless" => {
                v6_mode(Ipv6Auto::DhcpStateless, &mut l3, self)
            }
            "ipv6_slaac" => v6_mode(Ipv6Auto::Slaac, &mut l3, self),
            other => {
                self.warn(
                    &format!("{field}.type"),
                    format!("unknown network type {other:?}; network ignored"),
                );
                self.config.links[li].l3 = l3;
                return Ok(());
            }
        }
        match o.get("routes") {
            Some(Value::Array(routes)) => {
                for (j, r) in routes.iter().enumerate() {
                    if let Some(route) = self.route(&format!("{field}.routes[{j}]"), r, &mut l3.dns)
                    {
                        l3.add_route(route);
                    }
                }
            }
            None | Some(Value::Null) => {}
            Some(other) => self.warn(
                &format!("{field}.routes"),
                format!("expected a list, found {}; ignored", kind(other)),
            ),
        }
        if let Some(Value::Array(s)) = o.get("services") {
            for (j, s) in s.iter().enumerate() {
                self.service(&format!("{field}.services[{j}]"), s, &mut l3.dns);
            }
        }
        // Ironic and neutron-style extras seen in real files.
        for (key, search) in [("dns_nameservers", false), ("dns_search", true)] {
            if let Some(Value::Array(a)) = o.get(key) {
                for (j, x) in a.iter().enumerate() {
                    let s = scalar(x).unwrap_or_default();
                    if search {
                        if let Err(e) = l3.dns.add_search(&s) {
                            self.warn(
                                &format!("{field}.{key}[{j}]"),
                                format!("{}: not a DNS name; ignored", refused(&s, e)),
                            );
                        }
                    } else if let Some(ip) = parse_ip(&s) {
                        l3.dns.add_server(ip);
                    } else {
                        self.warn(
                            &format!("{field}.{key}[{j}]"),
                            format!("{s:?} is not an IP address; ignored"),
                        );
                    }
                }
            }
        }
        self.config.links[li].l3 = l3;
        Ok(())
    }

    fn route(&mut self, field: &str, v: &Value, dns: &mut Dns) -> Option<Route> {
        let Value::Object(o) = v else {
            self.warn(
                field,
                format!("expected an object, found {}; ignored", kind(v)),
            );
            return None;
        };
        let network = self.text(o, field, "network");
        let netmask = self.text(o, field, "netmask");
        let gateway = self.text(o, field, "gateway");
        let Some(network) = network else {
            self.warn(field, "route without a network; ignored");
            return None;
        };
        let to = match route_destination(&network, netmask.as_deref()) {
            Ok(n) => n,
            Err(e) => {
                self.warn(field, format!("{e}; route ignored"));
                return None;
            }
        };
        if netmask.is_none() && !network.contains('/') {
            self.warn(
                &format!("{field}.netmask"),
                format!("missing; route to {to} assumed"),
            );
        }
        let via = match gateway.as_deref().map(|g| (g, parse_ip(g))) {
            None => None,
            Some((_, Some(ip))) if ip.is_ipv6() == to.addr().is_ipv6() => {
                if ip.is_unspecified() {
                    None
                } else {
                    Some(ip)
                }
            }
            Some((g, _)) => {
                self.warn(
                    &format!("{field}.gateway"),
                    format!("{g:?} is not an address of the same family as {to}; route ignored"),
                );
                return None;
            }
        };
        let metric = o
            .get("metric")
            .and_then(number)
            .and_then(|m| u32::try_from(m).ok());
        if let Some(Value::Array(s)) = o.get("services") {
            for (j, s) in s.iter().enumerate() {
                self.service(&format!("{field}.services[{j}]"), s, dns);
            }
        }
        Some(Route { to, via, metric })
    }

    fn service(&mut self, field: &str, v: &Value, dns: &mut Dns) {
        let Value::Object(o) = v else {
            self.warn(
                field,
                format!("expected an object, found {}; ignored", kind(v)),
            );
            return;
        };
        let ty = self.text(o, field, "type").unwrap_or_default();
        if ty != "dns" {
            tracing::debug!("{}: {field}: service type {ty:?} not used", self.file);
            return;
        }
        match self
            .text(o, field, "address")
            .as_deref()
            .map(|a| (a, parse_ip(a)))
        {
            Some((_, Some(ip))) => dns.add_server(ip),
            Some((a, None)) => self.warn(
                &format!("{field}.address"),
                format!("{a:?} is not an IP address; ignored"),
            ),
            None => self.warn(field, "dns service without an address; ignored"),
        }
    }
}

#[cfg(test)]
mod tests {
    /// 20,000 links and a network on each: every network finds its link in the index (a
    /// scan of the links per network: 200 million comparisons, minutes in a debug build).
    #[test]
    fn twenty_thousand_networks_find_their_links_in_linear_time() {
        let n = 20_000;
        let links: Vec<Value> = (0..n)
            .map(|i| {
                serde_json::json!({"id": format!("t{i}"), "type": "phy",
                    "ethernet_mac_address": format!("52:54:01:00:{:02x}:{:02x}", i >> 8, i & 255)})
            })
            .collect();
        let networks: Vec<Value> = (0..n)
            .map(|i| {
                serde_json::json!({"id": format!("n{i}"), "link": format!("t{}", n - 1 - i),
                    "type": "ipv4", "ip_address": format!("10.{}.{}.1", i >> 8, i & 255),
                    "netmask": "255.255.255.0"})
            })
            .collect();
        let doc = serde_json::json!({"links": links, "networks": networks});
        let (c, _) = parse_network_data_value(&doc, "network_data.json").unwrap();
        assert_eq!(c.links.len(), n);
        assert!(c.links.iter().all(|l| l.l3.addresses.len() == 1));
        assert_eq!(c.links[0].l3.addresses[0].to_string(), "10.78.31.1/24");
    }

    use super::*;
    use crate::model::network::Ipv6Auto;

    fn parse(s: &str) -> Result<(NetworkConfig, Report), NetError> {
        parse_network_data(s.as_bytes(), "network_data.json")
    }

    /// A decoded document parses as its text does (the plan no longer writes it out and reads
    /// it back), the size bound holds, and an oversized one is refused with the same error.
    #[test]
    fn a_document_parses_as_its_text() {
        let doc = serde_json::json!({
            "links": [
                {"id": "tap1", "type": "phy", "ethernet_mac_address": "BC:76:4E:01:62:86",
                 "mtu": 1500, "vif_id": "x"},
                {"id": "bond0", "type": "bond", "bond_links": ["tap1"], "bond_mode": "802.3ad",
                 "bond_miimon": 100.5, "ethernet_mac_address": "bc:76:4e:01:62:86"},
                {"id": "v\u{1}", "type": "vlan", "vlan_link": "bond0", "vlan_id": 7}
            ],
            "networks": [{"id": "n0", "link": "bond0", "type": "ipv4",
                          "ip_address": "10.0.0.5", "netmask": "255.255.255.0",
                          "routes": [{"network": "0.0.0.0", "netmask": "0.0.0.0",
                                      "gateway": "10.0.0.1"}]}],
            "services": [{"type": "dns", "address": "8.8.8.8"}, null, -1e300, true]
        });
        let text = serde_json::to_vec(&doc).unwrap();
        let by_text = parse_network_data(&text, "f").unwrap();
        assert_eq!(
            parse_network_data_doc(&doc, text.len(), "f").unwrap(),
            by_text
        );
        // Over the limit: numbers written long (a bound cannot settle it, the count does).
        let big = Value::Array(vec![Value::from(1e15); super::super::MAX_INPUT / 10]);
        let text = serde_json::to_vec(&serde_json::json!({ "links": big })).unwrap();
        assert!(text.len() > super::super::MAX_INPUT);
        let doc: Value = serde_json::from_slice(&text).unwrap();
        assert_eq!(
            parse_network_data_doc(&doc, text.len(), "f").unwrap_err(),
            parse_network_data(&text, "f").unwrap_err()
        );
    }

    #[test]
    fn empty_object_is_empty() {
        let (c, r) = parse("{}").unwrap();
        assert!(c.is_empty() && r.warnings.is_empty());
    }

    #[test]
    fn nova_hyphenated_types_and_cloudstack_quirks() {
        let (c, r) = parse(
            r#"{"links":[{"id":"a","type":"phy","ethernet_mac_address":"FA:16:3E:00:00:01"},
                        {"id":"b","type":"weird","ethernet_mac_address":"fa:16:3e:00:00:02"}],
               "networks":[
                 {"id":"n","link":"a","type":"ipv6_dhcpv6-stateless"},
                 {"id":"n","link":"b","type":"ipv6","ip_address":"2001:db8::5","netmask":"64",
                  "routes":[{"network":"::","netmask":"0","gateway":"2001:db8::1"}]},
                 {"id":"n","link":"b","type":"ipv4","ip_address":"10.0.0.5","netmask":"255.255.255.0"}],
               "services":[{"type":"dns","address":"10.0.0.2"}]}"#,
        )
        .unwrap();
        assert_eq!(c.links[0].l3.ipv6, Ipv6Auto::DhcpStateless);
        assert_eq!(c.links[0].mac.as_deref(), Some("fa:16:3e:00:00:01"));
        assert_eq!(c.links[1].kind, LinkKind::Physical);
        assert_eq!(c.links[1].l3.addresses.len(), 2);
        assert!(c.links[1].l3.routes[0].is_default());
        assert_eq!(c.dns.nameservers.len(), 1);
        assert!(r
            .warnings
            .iter()
            .any(|w| w.field == "links[1] (id b).type" && w.message.contains("physical")));
    }

    #[test]
    fn missing_link_names_both_ids() {
        let e =
            parse(r#"{"links":[],"networks":[{"id":"net9","link":"tapX","type":"ipv4_dhcp"}]}"#)
                .unwrap_err();
        assert!(
            e.message.contains("net9") && e.message.contains("tapX"),
            "{e}"
        );
        let e = parse(
            r#"{"links":[{"id":"b","type":"bond","bond_mode":"active-backup","bond_links":["x"]}]}"#,
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("\"b\"") && e.to_string().contains("\"x\""),
            "{e}"
        );
    }

    #[test]
    fn a_bad_search_domain_is_dropped_and_the_network_kept() {
        let (c, r) = parse(
            r#"{"links":[{"id":"tap0","type":"phy","ethernet_mac_address":"52:54:00:00:00:01"}],
               "networks":[{"id":"n0","link":"tap0","type":"ipv4","ip_address":"10.0.0.5/24",
                 "dns_search":["good.example","x.example\n    up touch /tmp/pwned","a_b.example"]}]}"#,
        )
        .unwrap();
        let l = &c.links[0];
        assert_eq!(l.l3.dns.search, ["good.example"]);
        assert_eq!(l.l3.addresses.len(), 1);
        let w: Vec<String> = r.warnings.iter().map(|w| w.to_string()).collect();
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(
            w[0].starts_with("network_data.json: networks[0] (id n0).dns_search[1]: \"x.example\\n    up touch /tmp/pwned\" holds the control character U+000A"),
            "{w:?}"
        );
        assert!(w[1].contains(".dns_search[2]"), "{w:?}");
        assert!(w.iter().all(|w| !w.contains('\n')));
    }

    #[test]
    fn a_bad_link_id_drops_the_link_and_its_networks_only() {
        let (c, r) = parse(
            r#"{"links":[{"id":"t\nx","type":"phy","ethernet_mac_address":"52:54:00:00:00:09"},
                        {"id":"tap0","type":"phy","ethernet_mac_address":"52:54:00:00:00:01",
                         "name":"e;reboot"},
                        {"id":"b","type":"bond","bond_mode":"1","bond_links":["tap0","t\nx"]}],
               "networks":[{"id":"n9","link":"t\nx","type":"ipv4_dhcp"},
                           {"id":"n0","link":"tap0","type":"ipv4_dhcp"}]}"#,
        )
        .unwrap();
        assert_eq!(c.links.len(), 2);
        assert_eq!(c.links[0].name, None, "the bad name dropped, the link kept");
        assert!(c.links[0].l3.dhcp4);
        assert_eq!(c.links[1].kind.members(), ["tap0"]);
        let fields: Vec<&str> = r.warnings.iter().map(|w| w.field.as_str()).collect();
        for f in [
            "links[0].id",
            "links[1] (id tap0).name",
            "links[2] (id b).bond_links[1]",
            "networks[0] (id n9).link",
        ] {
            assert!(fields.contains(&f), "{f}: {fields:?}");
        }
    }

    #[test]
    fn bond_without_mac_and_prefix_in_address() {
        let (c, _) = parse(
            r#"{"links":[{"id":"l0","type":"phy","ethernet_mac_address":"00:00:00:00:00:01"},
                        {"id":"l1","type":"phy","ethernet_mac_address":"00:00:00:00:00:02"},
                        {"id":"bond0","type":"bond","bond_links":["l0","l1"],"bond_mode":"802.3ad",
                         "bond_xmit_hash_policy":"layer3+4","mtu":9000}],
               "networks":[{"id":"x","link":"bond0","type":"ipv6","ip_address":"2001:cdba::3257:9652/24"}]}"#,
        )
        .unwrap();
        let b = c.link("bond0").unwrap();
        assert!(b.mac.is_none());
        assert_eq!(b.mtu, Some(9000));
        assert_eq!(b.l3.addresses[0].to_string(), "2001:cdba::3257:9652/24");
    }
}
