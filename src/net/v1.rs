//! Network config version 1 (cloud-init's list of `physical`, `bond`, `vlan`, `bridge`,
//! `nameserver` and `route` entries with `subnets`; NoCloud and OVF carry it) into the network
//! model. Pure; liberal with warnings naming file and field; a reference to a missing link is
//! an error naming both ids.

use std::net::IpAddr;

use serde_json::{Map, Value};

use super::{
    address_with_prefix, kind, number, parse_ip, refused, scalar, truthy, NetError, PrefixSource,
};
use crate::model::grammar::Esc;
use crate::model::network::{
    check_ifname, check_link_id, normalize_mac, BondMode, BondParams, Dns, Ipv6Auto, Link,
    LinkKind, NetworkConfig, Route, L3,
};
use crate::model::Report;

/// Parses v1 bytes (YAML or JSON, with or without a `network:` wrapper).
pub fn parse_v1(bytes: &[u8], file: &str) -> Result<(NetworkConfig, Report), NetError> {
    let doc = super::load_yaml(bytes, file)?;
    let (doc, _) = super::unwrap_network_key(doc);
    parse_v1_value(&doc, file)
}

/// Parses a decoded v1 document (the mapping holding `version: 1` and `config`).
pub fn parse_v1_value(doc: &Value, file: &str) -> Result<(NetworkConfig, Report), NetError> {
    let Value::Object(top) = doc else {
        return Err(NetError::new(
            file,
            "",
            format!("top level is {}, not a mapping", kind(doc)),
        ));
    };
    let entries = match top.get("config") {
        Some(Value::Array(a)) => a.as_slice(),
        None | Some(Value::Null) => &[],
        Some(other) => {
            return Err(NetError::new(
                file,
                "config",
                format!("expected a list, found {}", kind(other)),
            ))
        }
    };
    let mut c = Conv {
        file,
        report: Report::default(),
        config: NetworkConfig::default(),
    };
    let mut global_routes = Vec::new();
    // The first link of each id, kept as links are added (a `nameserver` entry names a link
    // before it), and the servers each entry adds, merged once after the loop: a scan of the
    // links and a merge into the growing list per entry were quadratic (issue 15). Links are
    // only appended, and only these entries change DNS: the same lists.
    let mut first: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    // Index 0: the machine's; link `li`'s at `li + 1`.
    let mut dns_of: Vec<Dns> = Vec::new();
    let mut indexed = 0;
    for (i, e) in entries.iter().enumerate() {
        for (k, l) in c.config.links.iter().enumerate().skip(indexed) {
            first.entry(l.id.clone()).or_insert(k);
        }
        indexed = c.config.links.len();
        let field = format!("config[{i}]");
        let Value::Object(o) = e else {
            c.warn(
                &field,
                format!("expected a mapping, found {}; ignored", kind(e)),
            );
            continue;
        };
        let ty = o.get("type").and_then(scalar).unwrap_or_default();
        match ty.as_str() {
            "physical" | "bond" | "vlan" | "bridge" => c.link_entry(&field, &ty, o),
            "nameserver" => {
                let iface = o.get("interface").and_then(scalar);
                let mut dns = Dns::default();
                c.dns_lists(&field, o, "address", "search", &mut dns);
                let at = iface.and_then(|n| first.get(&n)).map_or(0, |li| li + 1);
                if dns_of.len() <= at {
                    dns_of.resize_with(at + 1, Dns::default);
                }
                let to = &mut dns_of[at];
                to.nameservers.append(&mut dns.nameservers);
                to.search.append(&mut dns.search);
            }
            "route" => {
                if let Some(r) = c.route(&field, o) {
                    global_routes.push((field, r));
                }
            }
            "" => c.warn(&format!("{field}.type"), "entry without a type; ignored"),
            other => c.warn(
                &format!("{field}.type"),
                format!("unknown entry type {other:?}; treated as ignored"),
            ),
        }
    }
    for (at, dns) in dns_of.iter().enumerate() {
        match at.checked_sub(1) {
            Some(li) => c.config.links[li].l3.dns.extend(dns),
            None => c.config.dns.extend(dns),
        }
    }
    // A top-level route belongs to the link whose subnet holds its gateway, else to the first
    // link with a configuration of that family: from an index of the subnets built once (a
    // scan of every link's addresses per route was quadratic; routes change no address).
    let subnets = Subnets::new(&c.config.links);
    let first_of = |v6: bool| {
        c.config
            .links
            .iter()
            .position(|l| if v6 { l.l3.has_v6() } else { l.l3.has_v4() })
    };
    let first_family = [first_of(false), first_of(true)];
    // The routes each target link holds, as a set made at its first route: `add_route`'s
    // search of the list per route was quadratic in top-level routes.
    let mut held: std::collections::HashMap<usize, std::collections::HashSet<Route>> =
        Default::default();
    for (field, r) in global_routes {
        let target = r
            .via
            .and_then(|g| subnets.first_holding(g))
            .or(first_family[usize::from(r.to.addr().is_ipv6())]);
        match target {
            Some(li) => {
                let routes = &mut c.config.links[li].l3.routes;
                let set = held
                    .entry(li)
                    .or_insert_with(|| routes.iter().cloned().collect());
                if set.insert(r.clone()) {
                    routes.push(r);
                }
            }
            None => c.warn(
                &field,
                format!("no link to carry the route to {}; ignored", r.to),
            ),
        }
    }
    super::validate(&c.config, file)?;
    super::normalize(&mut c.config, &mut c.report, file);
    Ok((c.config, c.report))
}

/// The static subnets of links, by network: which link first holds an address, found with a
/// lookup per prefix length in use instead of a scan of every link's addresses.
struct Subnets {
    /// Each subnet (network address and prefix) with the first link that has it.
    first: std::collections::HashMap<ipnet::IpNet, usize>,
    /// The prefix lengths in use, per family (IPv4, IPv6), each once, in order.
    lens: [Vec<u8>; 2],
}

impl Subnets {
    fn new(links: &[Link]) -> Subnets {
        let mut s = Subnets {
            first: Default::default(),
            lens: Default::default(),
        };
        for (li, l) in links.iter().enumerate() {
            for a in &l.l3.addresses {
                s.first.entry(a.trunc()).or_insert(li);
                let lens = &mut s.lens[usize::from(a.addr().is_ipv6())];
                if let Err(k) = lens.binary_search(&a.prefix_len()) {
                    lens.insert(k, a.prefix_len());
                }
            }
        }
        s
    }

    /// The first link with an address whose subnet holds `ip` (`links.iter().position(|l|
    /// l.l3.addresses.iter().any(|a| a.contains(&ip)))`).
    fn first_holding(&self, ip: IpAddr) -> Option<usize> {
        self.lens[usize::from(ip.is_ipv6())]
            .iter()
            .filter_map(|&len| ipnet::IpNet::new(ip, len).ok())
            .filter_map(|n| self.first.get(&n.trunc()).copied())
            .min()
    }
}

pub(crate) struct Conv<'a> {
    pub file: &'a str,
    pub report: Report,
    pub config: NetworkConfig,
}

impl Conv<'_> {
    pub fn warn(&mut self, field: &str, msg: impl Into<String>) {
        self.report.warn(self.file, field, msg);
    }

    fn link_entry(&mut self, field: &str, ty: &str, o: &Map<String, Value>) {
        let Some(name) = o.get("name").and_then(scalar).filter(|n| !n.is_empty()) else {
            self.warn(
                &format!("{field}.name"),
                format!("{ty} entry without a name; ignored"),
            );
            return;
        };
        if let Err(e) = check_link_id(&name) {
            self.warn(
                &format!("{field}.name"),
                format!("{}; {ty} entry ignored", refused(&name, e)),
            );
            return;
        }
        let field = format!("{field} (name {name})");
        if self.config.link(&name).is_some() {
            self.warn(&field, format!("a second entry named {name:?}; ignored"));
            return;
        }
        let params = match o.get("params") {
            Some(Value::Object(p)) => p.clone(),
            _ => Map::new(),
        };
        let kind = match ty {
            "bond" => {
                let members = self.names(&field, o, "bond_interfaces");
                // Keys appear as `bond-mode` and `bond_mode`, inside `params` or beside it.
                let get = |k: &str| {
                    let alt = k.replace('-', "_");
                    params
                        .get(k)
                        .or_else(|| params.get(&alt))
                        .or_else(|| o.get(k))
                        .or_else(|| o.get(&alt))
                        .cloned()
                };
                let mode = match get("bond-mode").as_ref().and_then(scalar) {
                    Some(m) => BondMode::parse(&m).unwrap_or_else(|| {
                        self.warn(
                            &format!("{field}.params.bond-mode"),
                            format!("unknown bond mode {m:?}; using balance-rr"),
                        );
                        BondMode::BalanceRr
                    }),
                    None => {
                        self.warn(
                            &format!("{field}.params.bond-mode"),
                            "missing; using balance-rr (the kernel's default)",
                        );
                        BondMode::BalanceRr
                    }
                };
                let mut p = BondParams::new(mode);
                p.miimon = get("bond-miimon")
                    .as_ref()
                    .and_then(number)
                    .and_then(|n| u32::try_from(n).ok());
                p.xmit_hash_policy = get("bond-xmit-hash-policy")
                    .as_ref()
                    .and_then(scalar)
                    .and_then(|x| {
                        let lower = x.to_ascii_lowercase();
                        if super::XMIT_HASH_POLICIES.contains(&lower.as_str()) {
                            Some(lower)
                        } else {
                            self.warn(
                                &format!("{field}.params.bond-xmit-hash-policy"),
                                format!("unknown policy {}; ignored", Esc(&x)),
                            );
                            None
                        }
                    });
                p.lacp_rate = get("bond-lacp-rate")
                    .as_ref()
                    .and_then(scalar)
                    .and_then(|x| match x.to_ascii_lowercase().as_str() {
                        "fast" | "1" => Some("fast".to_string()),
                        "slow" | "0" => Some("slow".to_string()),
                        _ => None,
                    });
                p.primary = get("bond-primary")
                    .as_ref()
                    .and_then(scalar)
                    .and_then(|x| self.link_ref(&format!("{field}.params.bond-primary"), x));
                // Every other `bond-*`/`bond_*` key (inside `params` or beside it) by its
                // kernel name, or a warning naming it.
                let typed = [
                    "mode",
                    "miimon",
                    "xmit_hash_policy",
                    "lacp_rate",
                    "primary",
                    "interfaces",
                    "slaves",
                    "master",
                ];
                let rest: Vec<(&str, Option<String>, &Value)> = params
                    .iter()
                    .chain(o.iter())
                    .filter_map(|(k, v)| {
                        let opt = k
                            .strip_prefix("bond-")
                            .or_else(|| k.strip_prefix("bond_"))?;
                        let kernel = opt.replace('-', "_");
                        (!typed.contains(&kernel.as_str())).then_some((k.as_str(), Some(kernel), v))
                    })
                    .collect();
                let file = self.file;
                super::bond_options(
                    &mut self.report,
                    file,
                    &format!("{field}.params"),
                    &mut p,
                    rest,
                );
                LinkKind::Bond { members, params: p }
            }
            "vlan" => {
                let parent = o
                    .get("vlan_link")
                    .and_then(scalar)
                    .and_then(|x| self.link_ref(&format!("{field}.vlan_link"), x))
                    .unwrap_or_default();
                let id = o.get("vlan_id").and_then(number).filter(|n| *n <= 4094);
                match (parent.is_empty(), id) {
                    (false, Some(id)) => LinkKind::Vlan {
                        parent,
                        vlan_id: id as u16,
                    },
                    _ => {
                        self.warn(
                            &field,
                            "vlan needs vlan_link and a vlan_id in 0-4094; ignored",
                        );
                        return;
                    }
                }
            }
            "bridge" => LinkKind::Bridge {
                members: self.names(&field, o, "bridge_interfaces"),
                stp: params
                    .get("bridge_stp")
                    .or_else(|| params.get("bridge-stp"))
                    .and_then(truthy),
            },
            _ => LinkKind::Physical,
        };
        let mut link = Link::new(name.clone(), kind);
        match check_ifname(&name) {
            Ok(()) => link.name = Some(name.clone()),
            Err(e) => self.warn(
                &format!("{field}.name"),
                format!(
                    "{}: not a valid interface name; matched by MAC only",
                    refused(&name, e)
                ),
            ),
        }
        if let Some(m) = o.get("mac_address").and_then(scalar) {
            match normalize_mac(&m) {
                Some(m) => link.mac = Some(m),
                None => self.warn(
                    &format!("{field}.mac_address"),
                    format!("{m:?} is not a MAC address; ignored"),
                ),
            }
        }
        link.mtu = o
            .get("mtu")
            .and_then(number)
            .and_then(|n| u32::try_from(n).ok())
            .filter(|n| (68..=65535).contains(n));
        if let Some(Value::Array(subnets)) = o.get("subnets") {
            for (j, s) in subnets.iter().enumerate() {
                self.subnet(&format!("{field}.subnets[{j}]"), s, &mut link.l3);
            }
        }
        self.config.links.push(link);
    }

    /// A reference to another link (a member, a parent, a bond's primary): a usable link id,
    /// else `None` with a warning naming `field`.
    pub fn link_ref(&mut self, field: &str, s: String) -> Option<String> {
        match check_link_id(&s) {
            Ok(()) => Some(s),
            Err(_) if s.is_empty() => None,
            Err(e) => {
                self.warn(field, format!("{}; ignored", refused(&s, e)));
                None
            }
        }
    }

    /// A list of link references (`bond_interfaces`, v2 `interfaces`), each checked.
    pub fn names(&mut self, field: &str, o: &Map<String, Value>, key: &str) -> Vec<String> {
        match o.get(key) {
            Some(Value::Array(a)) => {
                let mut out = Vec::new();
                for (j, x) in a.iter().enumerate() {
                    if let Some(s) = scalar(x).filter(|s| !s.is_empty()) {
                        if let Some(s) = self.link_ref(&format!("{field}.{key}[{j}]"), s) {
                            out.push(s);
                        }
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

    fn subnet(&mut self, field: &str, v: &Value, l3: &mut L3) {
        let Value::Object(o) = v else {
            self.warn(
                field,
                format!("expected a mapping, found {}; ignored", kind(v)),
            );
            return;
        };
        let ty = o.get("type").and_then(scalar).unwrap_or_default();
        match ty.as_str() {
            "dhcp" | "dhcp4" => l3.dhcp4 = true,
            "dhcp6" | "ipv6_dhcpv6-stateful" => l3.ipv6 = l3.ipv6.max_mode(Ipv6Auto::DhcpStateful),
            "ipv6_dhcpv6-stateless" => l3.ipv6 = l3.ipv6.max_mode(Ipv6Auto::DhcpStateless),
            "ipv6_slaac" => l3.ipv6 = l3.ipv6.max_mode(Ipv6Auto::Slaac),
            "static" | "static6" => match o.get("address") {
                Some(Value::Array(a)) => {
                    for (k, x) in a.iter().enumerate() {
                        let s = scalar(x).unwrap_or_default();
                        self.address(&format!("{field}.address[{k}]"), &s, o, l3);
                    }
                }
                Some(x) => {
                    let s = scalar(x).unwrap_or_default();
                    self.address(&format!("{field}.address"), &s, o, l3);
                }
                None => self.warn(
                    &format!("{field}.address"),
                    "static subnet without an address",
                ),
            },
            "manual" | "" => {}
            other => self.warn(
                &format!("{field}.type"),
                format!("unknown subnet type {other:?}; ignored"),
            ),
        }
        if let Some(g) = o.get("gateway").and_then(scalar).filter(|g| !g.is_empty()) {
            match parse_ip(&g) {
                Some(ip) => l3.add_route(Route {
                    to: default_net(ip),
                    via: Some(ip),
                    metric: None,
                }),
                None => self.warn(
                    &format!("{field}.gateway"),
                    format!("{g:?} is not an IP address; ignored"),
                ),
            }
        }
        if let Some(Value::Array(routes)) = o.get("routes") {
            for (k, r) in routes.iter().enumerate() {
                let f = format!("{field}.routes[{k}]");
                match r {
                    Value::Object(ro) => {
                        if let Some(r) = self.route(&f, ro) {
                            l3.add_route(r);
                        }
                    }
                    other => self.warn(&f, format!("expected a mapping, found {}", kind(other))),
                }
            }
        }
        self.dns_lists(field, o, "dns_nameservers", "dns_search", &mut l3.dns);
    }

    fn address(&mut self, field: &str, s: &str, o: &Map<String, Value>, l3: &mut L3) {
        let mask = o
            .get("netmask")
            .and_then(scalar)
            .or_else(|| o.get("prefix").and_then(scalar));
        match address_with_prefix(s, mask.as_deref()) {
            Ok((net, src)) => {
                if src == PrefixSource::Default {
                    self.warn(
                        field,
                        format!("no prefix or netmask; /{} assumed", net.prefix_len()),
                    );
                }
                if !l3.addresses.contains(&net) {
                    l3.addresses.push(net);
                }
            }
            Err(e) => self.warn(field, format!("{e}; ignored")),
        }
    }

    /// A route from `destination` (CIDR) or `network` + `netmask`, `gateway`, `metric`.
    pub fn route(&mut self, field: &str, o: &Map<String, Value>) -> Option<Route> {
        let gateway = o.get("gateway").and_then(scalar).filter(|g| !g.is_empty());
        let via = match gateway.as_deref().map(|g| (g, parse_ip(g))) {
            None => None,
            Some((_, Some(ip))) => Some(ip),
            Some((g, None)) => {
                self.warn(
                    &format!("{field}.gateway"),
                    format!("{g:?} is not an IP address; route ignored"),
                );
                return None;
            }
        };
        let dest = o
            .get("destination")
            .or_else(|| o.get("network"))
            .and_then(scalar)
            .unwrap_or_default();
        let to = if dest.is_empty() || dest == "default" {
            match via {
                Some(ip) => default_net(ip),
                None => {
                    self.warn(field, "route without destination or gateway; ignored");
                    return None;
                }
            }
        } else {
            let mask = o.get("netmask").and_then(scalar);
            match super::route_destination(&dest, mask.as_deref()) {
                Ok(n) => n,
                Err(e) => {
                    self.warn(field, format!("{e}; route ignored"));
                    return None;
                }
            }
        };
        if via.is_some_and(|v| v.is_ipv6() != to.addr().is_ipv6()) {
            self.warn(
                field,
                format!("gateway and destination {to} differ in family; route ignored"),
            );
            return None;
        }
        let metric = o
            .get("metric")
            .and_then(number)
            .and_then(|m| u32::try_from(m).ok());
        Some(Route { to, via, metric })
    }

    /// Nameservers and search domains: each key may hold a list or one string (v1 allows
    /// space-separated lists in one string).
    pub fn dns_lists(
        &mut self,
        field: &str,
        o: &Map<String, Value>,
        servers: &str,
        search: &str,
        dns: &mut Dns,
    ) {
        for (key, is_search) in [(servers, false), (search, true)] {
            // A list names each item by index; a string is split at spaces and tabs only (a
            // newline inside it makes one item that the grammar refuses, never a new line).
            let items: Vec<(String, String)> = match o.get(key) {
                Some(Value::Array(a)) => a
                    .iter()
                    .enumerate()
                    .filter_map(|(k, x)| scalar(x).map(|s| (format!("{field}.{key}[{k}]"), s)))
                    .collect(),
                Some(v) => scalar(v)
                    .map(|s| {
                        let words: Vec<&str> = if is_search {
                            s.split([' ', '\t']).collect()
                        } else {
                            s.split_whitespace().collect()
                        };
                        words
                            .into_iter()
                            .filter(|x| !x.is_empty())
                            .map(|x| (format!("{field}.{key}"), x.to_string()))
                            .collect()
                    })
                    .unwrap_or_default(),
                None => Vec::new(),
            };
            // Checked one by one, added at once (`Dns::extend`: a search of the list per
            // item was quadratic in a long list).
            let mut add = Dns::default();
            for (f, s) in items {
                if is_search {
                    match Dns::search_form(&s) {
                        Ok(s) => add.search.push(s.to_string()),
                        Err(e) => {
                            self.warn(&f, format!("{}: not a DNS name; ignored", refused(&s, e)))
                        }
                    }
                } else if let Some(ip) = parse_ip(&s) {
                    add.nameservers.push(ip);
                } else {
                    self.warn(
                        &format!("{field}.{key}"),
                        format!("{s:?} is not an IP address; ignored"),
                    );
                }
            }
            dns.extend(&add);
        }
    }
}

/// `0.0.0.0/0` or `::/0`, matching the family of `ip`.
pub(crate) fn default_net(ip: IpAddr) -> ipnet::IpNet {
    match ip {
        IpAddr::V4(_) => ipnet::IpNet::V4(ipnet::Ipv4Net::default()),
        IpAddr::V6(_) => ipnet::IpNet::V6(ipnet::Ipv6Net::default()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Top-level routes and nameservers at scale: each placed through an index, merged once.
    /// 10,000 links, 100,000 routes whose gateway no subnet holds and 100,000 nameserver
    /// entries: scanned per route and merged per entry that was about 10^10 comparisons
    /// (minutes); now a few seconds at most. The placement is the scan's: the link whose subnet
    /// holds the gateway (the first of two), else the first with IPv4; a repeated server, route
    /// or search domain once, in first-seen order; a server for a link on that link.
    #[test]
    fn top_level_routes_and_nameservers_scale_linearly() {
        use serde_json::json;
        let links = 10_000;
        let many = 100_000;
        let mut config = Vec::new();
        for i in 0..links {
            let subnet = if i == 7777 || i == 8888 {
                // Two links holding the same gateway: the first gets its route.
                json!({"type": "static", "address": "198.18.0.1/15"})
            } else {
                json!({"type": "static", "address": format!("10.{}.{}.1/24", i >> 8, i & 255)})
            };
            config.push(json!({"type": "physical", "name": format!("l{i}"), "subnets": [subnet]}));
        }
        let ip = |k: usize| format!("100.{}.{}.{}", (k >> 16) & 63, (k >> 8) & 255, k & 255);
        for k in 0..many {
            // Every tenth repeats an earlier one.
            let k2 = if k % 10 == 9 { k - 9 } else { k };
            config.push(json!({"type": "route", "destination": format!("{}/32", ip(k2)), "gateway": "192.0.2.1"}));
            config.push(json!({"type": "nameserver", "address": [ip(k2)], "search": [format!("d{}.example", k2 % 1000)]}));
        }
        config.push(
            json!({"type": "route", "destination": "203.0.113.0/24", "gateway": "198.19.0.9"}),
        );
        config.push(json!({"type": "nameserver", "interface": "l5", "address": ["192.0.2.53", "192.0.2.53"]}));
        config.push(json!({"type": "nameserver", "interface": "later", "address": ["192.0.2.54"]}));
        config.push(json!({"type": "physical", "name": "later"}));
        let doc = json!({"version": 1, "config": config});
        let (c, _) = parse_v1_value(&doc, "network-config").unwrap();
        let distinct = many - many / 10;
        assert_eq!(c.links[0].l3.routes.len(), distinct);
        assert_eq!(
            c.links[0].l3.routes[2].to.to_string(),
            format!("{}/32", ip(2))
        );
        assert_eq!(c.links[7777].l3.routes.len(), 1);
        assert!(c.links[8888].l3.routes.is_empty());
        assert_eq!(c.dns.nameservers.len(), distinct + 1);
        assert_eq!(c.dns.nameservers[9].to_string(), ip(10));
        assert_eq!(c.dns.nameservers.last().unwrap().to_string(), "192.0.2.54");
        assert_eq!(c.dns.search.len(), 900);
        assert_eq!(c.links[5].l3.dns.nameservers.len(), 1);
        let later = c.links.iter().find(|l| l.id == "later").unwrap();
        assert!(later.l3.dns.is_empty());
    }

    #[test]
    fn v1_full() {
        let y = r#"
version: 1
config:
  - type: physical
    name: eth1
    mac_address: "52:54:00:00:00:02"
  - type: physical
    name: eth2
    mac_address: "52:54:00:00:00:03"
  - type: bond
    name: bond0
    bond_interfaces: [eth1, eth2]
    params: {bond-mode: active-backup, bond-miimon: 100}
    mtu: 1400
  - type: vlan
    name: bond0.42
    vlan_link: bond0
    vlan_id: 42
    subnets:
      - type: static
        address: 192.0.2.10/24
        gateway: 192.0.2.1
        dns_nameservers: [192.0.2.53]
        dns_search: [example.test]
      - type: ipv6_slaac
  - type: nameserver
    address: 9.9.9.9
  - type: route
    destination: 198.51.100.0/24
    gateway: 192.0.2.254
    metric: 5
"#;
        let (c, r) = parse_v1(y.as_bytes(), "network-config").unwrap();
        assert!(r.warnings.is_empty(), "{r:?}");
        let v = c.link("bond0.42").unwrap();
        assert_eq!(v.l3.addresses[0].to_string(), "192.0.2.10/24");
        assert_eq!(v.l3.ipv6, Ipv6Auto::Slaac);
        assert_eq!(v.l3.routes.len(), 2, "gateway and the top-level route");
        assert_eq!(v.l3.routes[1].metric, Some(5));
        assert_eq!(c.dns.nameservers.len(), 1);
        match &c.link("bond0").unwrap().kind {
            LinkKind::Bond { members, params } => {
                assert_eq!(members, &["eth1", "eth2"]);
                assert_eq!(params.mode, BondMode::ActiveBackup);
                assert_eq!(params.miimon, Some(100));
            }
            k => panic!("{k:?}"),
        }
    }

    #[test]
    fn search_strings_split_at_spaces_only_and_references_checked() {
        let y = "version: 1\nconfig:\n  - {type: physical, name: eth0, subnets: [{type: dhcp}]}\n  - {type: physical, name: \"eth1\\nx\"}\n  - {type: bond, name: bond0, bond_interfaces: [eth0, \"eth1\\nx\"], params: {bond-mode: 1, bond-primary: \"eth0\\nx\"}}\n  - {type: nameserver, address: 192.0.2.1, search: \"a.example b.example\\nup x\"}\n";
        let (c, r) = parse_v1(y.as_bytes(), "nc").unwrap();
        // "b.example\nup" is one word (split at spaces only) and refused; "x" is a name.
        assert_eq!(c.dns.search, ["a.example", "x"]);
        assert_eq!(c.links.len(), 2);
        match &c.link("bond0").unwrap().kind {
            LinkKind::Bond { members, params } => {
                assert_eq!(members, &["eth0"]);
                assert_eq!(params.primary, None);
            }
            k => panic!("{k:?}"),
        }
        let fields: Vec<&str> = r.warnings.iter().map(|w| w.field.as_str()).collect();
        for f in [
            "config[1].name",
            "config[2] (name bond0).bond_interfaces[1]",
            "config[2] (name bond0).params.bond-primary",
            "config[3].search",
        ] {
            assert!(fields.contains(&f), "{f}: {fields:?}");
        }
    }

    #[test]
    fn missing_member_is_an_error() {
        let e = parse_v1(
            b"version: 1\nconfig:\n  - {type: bond, name: bond0, bond_interfaces: [ethX], params: {bond-mode: 1}}\n",
            "nc",
        )
        .unwrap_err();
        assert!(
            e.message.contains("bond0") && e.message.contains("ethX"),
            "{e}"
        );
    }

    #[test]
    fn v1_bond_params_are_typed_or_warned() {
        use crate::model::network::BondValue;
        let y = "version: 1\nconfig:\n  - {type: physical, name: eth0, mac_address: \"52:54:00:00:00:01\"}\n  - {type: bond, name: bond0, bond_interfaces: [eth0], params: {bond-mode: 1, bond-updelay: 100, bond_downdelay: 100, bond-arp-ip-target: \"192.0.2.1 192.0.2.2\", bond-num-unsol-na: 2, bond-min-links: \"x\", bond-hyperdrive: 1}}\n";
        let (c, r) = parse_v1(y.as_bytes(), "nc").unwrap();
        let LinkKind::Bond { params, .. } = &c.link("bond0").unwrap().kind else {
            panic!()
        };
        assert_eq!(params.option("updelay"), Some(&BondValue::Num(100)));
        assert_eq!(params.option("downdelay"), Some(&BondValue::Num(100)));
        assert_eq!(
            params.option("num_grat_arp"),
            Some(&BondValue::Num(2)),
            "{:?}",
            r.warnings
        );
        assert_eq!(params.option("min_links"), None);
        match params.option("arp_ip_target") {
            Some(BondValue::Ips(v)) => assert_eq!(v.len(), 2),
            o => panic!("{o:?}"),
        }
        let w: Vec<String> = r.warnings.iter().map(|w| w.to_string()).collect();
        assert!(
            w.iter()
                .any(|w| w.contains("bond-min-links") && w.contains("not a number")),
            "{w:?}"
        );
        assert!(
            w.iter()
                .any(|w| w.contains("bond-hyperdrive") && w.contains("unknown bond option")),
            "{w:?}"
        );
    }
}
