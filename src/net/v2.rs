//! Network config version 2 (netplan's YAML: `ethernets`, `bonds`, `vlans`, `bridges`; NoCloud
//! and OVF carry it) into the network model. Pure; liberal with warnings naming file and
//! field; a reference to a missing link is an error naming both ids.

use serde_json::{Map, Value};

use super::v1::{default_net, Conv};
use super::{address_with_prefix, kind, number, parse_ip, refused, scalar, truthy, NetError};
use crate::model::grammar::Esc;
use crate::model::network::{
    check_glob, check_ifname, check_link_id, is_glob, normalize_mac, BondMode, BondParams,
    Ipv6Auto, Link, LinkKind, NetworkConfig, Route, L3,
};
use crate::model::Report;

/// Parses v2 bytes (YAML or JSON, with or without a `network:` wrapper).
pub fn parse_v2(bytes: &[u8], file: &str) -> Result<(NetworkConfig, Report), NetError> {
    let doc = super::load_yaml(bytes, file)?;
    let (doc, _) = super::unwrap_network_key(doc);
    parse_v2_value(&doc, file)
}

/// Parses a decoded v2 document (the mapping holding `version: 2`).
pub fn parse_v2_value(doc: &Value, file: &str) -> Result<(NetworkConfig, Report), NetError> {
    let Value::Object(top) = doc else {
        return Err(NetError::new(
            file,
            "",
            format!("top level is {}, not a mapping", kind(doc)),
        ));
    };
    let mut c = Conv {
        file,
        report: Report::default(),
        config: NetworkConfig::default(),
    };
    for section in ["ethernets", "bonds", "vlans", "bridges"] {
        match top.get(section) {
            Some(Value::Object(m)) => {
                for (id, v) in m {
                    section_entry(&mut c, section, id, v);
                }
            }
            None | Some(Value::Null) => {}
            Some(other) => c.warn(
                section,
                format!("expected a mapping, found {}; ignored", kind(other)),
            ),
        }
    }
    for k in top.keys() {
        if !matches!(
            k.as_str(),
            "version" | "ethernets" | "bonds" | "vlans" | "bridges" | "renderer"
        ) {
            c.warn(k, "not supported; ignored");
        }
    }
    super::validate(&c.config, file)?;
    super::normalize(&mut c.config, &mut c.report, file);
    Ok((c.config, c.report))
}

fn section_entry(c: &mut Conv, section: &str, id: &str, v: &Value) {
    if let Err(e) = check_link_id(id) {
        c.warn(
            &format!("{section}.{}", Esc(id)),
            format!("{}; entry ignored", refused(id, e)),
        );
        return;
    }
    let field = format!("{section}.{id}");
    let Value::Object(o) = v else {
        c.warn(
            &field,
            format!("expected a mapping, found {}; ignored", kind(v)),
        );
        return;
    };
    if c.config.link(id).is_some() {
        c.warn(&field, format!("{id:?} is defined twice; ignored"));
        return;
    }
    let params = match o.get("parameters") {
        Some(Value::Object(p)) => p.clone(),
        _ => Map::new(),
    };
    let kind = match section {
        "bonds" => {
            let mode = match params.get("mode").and_then(scalar) {
                Some(m) => BondMode::parse(&m).unwrap_or_else(|| {
                    c.warn(
                        &format!("{field}.parameters.mode"),
                        format!("unknown bond mode {m:?}; using balance-rr"),
                    );
                    BondMode::BalanceRr
                }),
                None => BondMode::BalanceRr,
            };
            let mut p = BondParams::new(mode);
            p.miimon = params.get("mii-monitor-interval").and_then(millis);
            p.xmit_hash_policy = params
                .get("transmit-hash-policy")
                .and_then(scalar)
                .map(|x| x.to_ascii_lowercase())
                .filter(|x| super::XMIT_HASH_POLICIES.contains(&x.as_str()));
            p.lacp_rate = params
                .get("lacp-rate")
                .and_then(scalar)
                .map(|x| x.to_ascii_lowercase())
                .filter(|x| x == "fast" || x == "slow");
            p.primary = params
                .get("primary")
                .and_then(scalar)
                .and_then(|x| c.link_ref(&format!("{field}.parameters.primary"), x));
            // Every other parameter by its netplan name (and the names netplan had before
            // 0.105), or a warning naming it.
            let rest: Vec<(&str, Option<String>, &Value)> = params
                .iter()
                .filter(|(k, _)| {
                    !matches!(
                        k.as_str(),
                        "mode"
                            | "mii-monitor-interval"
                            | "transmit-hash-policy"
                            | "lacp-rate"
                            | "primary"
                    )
                })
                .map(|(k, v)| {
                    let k2 = match k.as_str() {
                        "all-slaves-active" => "all-members-active",
                        "packets-per-slave" => "packets-per-member",
                        k => k,
                    };
                    let kernel = crate::model::network::BOND_OPTIONS
                        .iter()
                        .find(|s| s.netplan == Some(k2))
                        .map(|s| s.kernel.to_string());
                    (k.as_str(), kernel, v)
                })
                .collect();
            super::bond_options(
                &mut c.report,
                c.file,
                &format!("{field}.parameters"),
                &mut p,
                rest,
            );
            LinkKind::Bond {
                members: c.names(&field, o, "interfaces"),
                params: p,
            }
        }
        "vlans" => {
            let parent = o
                .get("link")
                .and_then(scalar)
                .and_then(|x| c.link_ref(&format!("{field}.link"), x))
                .unwrap_or_default();
            match (
                parent.is_empty(),
                o.get("id").and_then(number).filter(|n| *n <= 4094),
            ) {
                (false, Some(n)) => LinkKind::Vlan {
                    parent,
                    vlan_id: n as u16,
                },
                _ => {
                    c.warn(&field, "vlan needs link and an id in 0-4094; ignored");
                    return;
                }
            }
        }
        "bridges" => LinkKind::Bridge {
            members: c.names(&field, o, "interfaces"),
            stp: params.get("stp").and_then(truthy),
        },
        _ => LinkKind::Physical,
    };
    let mut link = Link::new(id, kind);
    let is_phy = matches!(link.kind, LinkKind::Physical);
    if is_phy {
        let m = match o.get("match") {
            Some(Value::Object(m)) => m.clone(),
            _ => Map::new(),
        };
        if let Some(mac) = m.get("macaddress").and_then(scalar) {
            match normalize_mac(&mac) {
                Some(x) => link.mac = Some(x),
                None => c.warn(
                    &format!("{field}.match.macaddress"),
                    format!("{mac:?} is not a MAC address; ignored"),
                ),
            }
        }
        let glob_at = |c: &mut Conv, key: &str| -> Option<String> {
            let g = m.get(key)?;
            let f = format!("{field}.match.{key}");
            let Some(g) = scalar(g) else {
                c.warn(
                    &f,
                    format!("expected a string, found {}; ignored", super::kind(g)),
                );
                return None;
            };
            match check_glob(&g) {
                Ok(()) => Some(g),
                Err(e) => {
                    c.warn(&f, format!("{}: not a match glob; ignored", refused(&g, e)));
                    None
                }
            }
        };
        // netplan: every property given under `match` must match (MAC, name glob, driver glob).
        let match_name = glob_at(c, "name");
        let match_driver = glob_at(c, "driver");
        if m.keys()
            .any(|k| !matches!(k.as_str(), "macaddress" | "name" | "driver"))
        {
            c.warn(
                &format!("{field}.match"),
                "only macaddress, name and driver are matched; other keys ignored",
            );
        }
        let set_name = o.get("set-name").and_then(scalar);
        if let Some(n) = &set_name {
            match check_ifname(n) {
                Ok(()) => link.name = Some(n.clone()),
                Err(e) => c.warn(
                    &field,
                    format!("{}: not a valid interface name; ignored", refused(n, e)),
                ),
            }
        }
        match match_name {
            // A literal name alone names the interface (as before); with a MAC or a driver it
            // is one more property that must match.
            Some(n)
                if !is_glob(&n)
                    && link.mac.is_none()
                    && match_driver.is_none()
                    && link.name.is_none() =>
            {
                match check_ifname(&n) {
                    Ok(()) => link.name = Some(n),
                    Err(e) => c.warn(
                        &field,
                        format!("{}: not a valid interface name; ignored", refused(&n, e)),
                    ),
                }
            }
            Some(n) => link.match_name = Some(n),
            None => {}
        }
        link.match_driver = match_driver;
        if !o.contains_key("match") && link.name.is_none() {
            // Without match, the key is the interface name.
            match check_ifname(id) {
                Ok(()) => link.name = Some(id.to_string()),
                Err(e) => c.warn(
                    &field,
                    format!("{}: not a valid interface name; ignored", refused(id, e)),
                ),
            }
        }
        if link.mac.is_none() && link.name.is_none() && !link.has_match_rules() {
            c.warn(&field, "matches no interface by MAC, name or driver");
        }
    } else {
        if check_ifname(id).is_ok() {
            link.name = Some(id.to_string());
        }
        if let Some(mac) = o.get("macaddress").and_then(scalar) {
            link.mac = normalize_mac(&mac);
            if link.mac.is_none() {
                c.warn(
                    &format!("{field}.macaddress"),
                    format!("{}: not a MAC address; ignored", Esc(&mac)),
                );
            }
        }
    }
    link.mtu = o
        .get("mtu")
        .and_then(number)
        .and_then(|n| u32::try_from(n).ok())
        .filter(|n| (68..=65535).contains(n));
    l3(c, &field, o, &mut link.l3);
    c.config.links.push(link);
}

/// Milliseconds from `100`, `"100"`, `"100ms"` or `"1s"`.
pub(crate) fn millis(v: &Value) -> Option<u32> {
    if let Some(n) = number(v) {
        return u32::try_from(n).ok();
    }
    let s = scalar(v)?;
    let s = s.trim();
    if let Some(ms) = s.strip_suffix("ms") {
        return ms.trim().parse().ok();
    }
    if let Some(sec) = s.strip_suffix('s') {
        return sec
            .trim()
            .parse::<u32>()
            .ok()
            .and_then(|x| x.checked_mul(1000));
    }
    None
}

fn l3(c: &mut Conv, field: &str, o: &Map<String, Value>, l3: &mut L3) {
    l3.dhcp4 = o.get("dhcp4").and_then(truthy).unwrap_or(false);
    if o.get("dhcp6").and_then(truthy).unwrap_or(false) {
        l3.ipv6 = Ipv6Auto::DhcpStateful;
    } else if o.get("accept-ra").and_then(truthy).unwrap_or(false) {
        l3.ipv6 = Ipv6Auto::Slaac;
    }
    if let Some(Value::Array(a)) = o.get("addresses") {
        for (i, x) in a.iter().enumerate() {
            // An address is a string, or a one-key mapping `{ADDR: {lifetime: ...}}`.
            let s = match x {
                Value::Object(m) if m.len() == 1 => m.keys().next().cloned(),
                other => scalar(other),
            };
            let f = format!("{field}.addresses[{i}]");
            match s.map(|s| (address_with_prefix(&s, None), s)) {
                Some((Ok((net, super::PrefixSource::Inline)), _)) => {
                    if !l3.addresses.contains(&net) {
                        l3.addresses.push(net);
                    }
                }
                Some((Ok((net, _)), s)) => {
                    c.warn(
                        &f,
                        format!("{s:?} has no prefix; /{} assumed", net.prefix_len()),
                    );
                    l3.addresses.push(net);
                }
                Some((Err(e), _)) => c.warn(&f, format!("{e}; ignored")),
                None => c.warn(&f, "not an address; ignored"),
            }
        }
    }
    for key in ["gateway4", "gateway6"] {
        if let Some(g) = o.get(key).and_then(scalar) {
            match parse_ip(&g) {
                Some(ip) if ip.is_ipv6() == (key == "gateway6") => l3.add_route(Route {
                    to: default_net(ip),
                    via: Some(ip),
                    metric: None,
                }),
                _ => c.warn(
                    &format!("{field}.{key}"),
                    format!("{g:?} is not an IPv{} address; ignored", &key[7..]),
                ),
            }
        }
    }
    if let Some(Value::Array(routes)) = o.get("routes") {
        for (i, r) in routes.iter().enumerate() {
            let f = format!("{field}.routes[{i}]");
            let Value::Object(ro) = r else {
                c.warn(
                    &f,
                    format!("expected a mapping, found {}; ignored", kind(r)),
                );
                continue;
            };
            let mut m = Map::new();
            if let Some(t) = ro.get("to") {
                m.insert("destination".into(), t.clone());
            }
            if let Some(v) = ro.get("via") {
                m.insert("gateway".into(), v.clone());
            }
            if let Some(x) = ro.get("metric") {
                m.insert("metric".into(), x.clone());
            }
            if let Some(r) = c.route(&f, &m) {
                l3.add_route(r);
            }
        }
    }
    if let Some(Value::Object(ns)) = o.get("nameservers") {
        c.dns_lists(
            &format!("{field}.nameservers"),
            ns,
            "addresses",
            "search",
            &mut l3.dns,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v2_bad_key_search_and_name_dropped() {
        let y = "version: 2\nethernets:\n  \"e\\nx\": {dhcp4: true}\n  eth0:\n    set-name: \"e$(reboot)\"\n    match: {macaddress: \"52:54:00:00:00:01\"}\n    dhcp4: true\n    nameservers: {search: [ok.example, \"x#y\"]}\n";
        let (c, r) = parse_v2(y.as_bytes(), "nc").unwrap();
        assert_eq!(c.links.len(), 1);
        assert_eq!(c.links[0].name, None);
        assert_eq!(c.links[0].l3.dns.search, ["ok.example"]);
        let w: Vec<String> = r.warnings.iter().map(|w| w.to_string()).collect();
        assert!(
            w.iter().any(|w| w.starts_with("nc: ethernets.\"e\\nx\": ")),
            "{w:?}"
        );
        assert!(
            w.iter()
                .any(|w| w.starts_with("nc: ethernets.eth0.nameservers.search[1]: \"x#y\"")),
            "{w:?}"
        );
        assert!(
            w.iter()
                .any(|w| w.starts_with("nc: ethernets.eth0: \"e$(reboot)\"")),
            "{w:?}"
        );
    }

    #[test]
    fn v2_bond_vlan() {
        let y = r#"
network:
  version: 2
  ethernets:
    nic1:
      match: {macaddress: "52:54:00:00:00:02"}
    nic2:
      match: {macaddress: "52:54:00:00:00:03"}
    eth0:
      addresses: [192.0.2.5/24, "2001:db8::5/64"]
      gateway4: 192.0.2.1
      routes: [{to: default, via: "2001:db8::1", metric: 10}]
      nameservers: {addresses: [192.0.2.53], search: [example.test]}
      accept-ra: true
  bonds:
    bond0:
      interfaces: [nic1, nic2]
      parameters: {mode: active-backup, mii-monitor-interval: 100ms}
  vlans:
    vlan42: {id: 42, link: bond0, dhcp4: yes}
"#;
        let (c, r) = parse_v2(y.as_bytes(), "network-config").unwrap();
        assert!(r.warnings.is_empty(), "{r:?}");
        let e = c.link("eth0").unwrap();
        assert_eq!(e.name.as_deref(), Some("eth0"));
        assert_eq!(e.l3.routes.len(), 2);
        assert_eq!(e.l3.routes[1].to.to_string(), "::/0");
        assert_eq!(e.l3.ipv6, Ipv6Auto::Slaac);
        assert!(c.link("vlan42").unwrap().l3.dhcp4);
        assert!(c.link("nic1").unwrap().name.is_none());
        match &c.link("bond0").unwrap().kind {
            LinkKind::Bond { params, .. } => assert_eq!(params.miimon, Some(100)),
            k => panic!("{k:?}"),
        }
    }

    #[test]
    fn v2_bond_parameters_are_typed_or_warned() {
        use crate::model::network::BondValue;
        let y = "version: 2\nethernets:\n  a: {match: {macaddress: \"52:54:00:00:00:01\"}}\nbonds:\n  bond0:\n    interfaces: [a]\n    parameters: {mode: active-backup, up-delay: 2s, down-delay: 300, all-slaves-active: true, arp-ip-targets: [192.0.2.1], fail-over-mac-policy: bogus, warp-drive: 9}\n";
        let (c, r) = parse_v2(y.as_bytes(), "nc").unwrap();
        let LinkKind::Bond { params, .. } = &c.link("bond0").unwrap().kind else {
            panic!()
        };
        assert_eq!(params.option("updelay"), Some(&BondValue::Num(2000)));
        assert_eq!(params.option("downdelay"), Some(&BondValue::Num(300)));
        assert_eq!(
            params.option("all_slaves_active"),
            Some(&BondValue::Bool(true))
        );
        assert_eq!(
            params.option("arp_ip_target"),
            Some(&BondValue::Ips(vec!["192.0.2.1".parse().unwrap()]))
        );
        assert_eq!(params.option("fail_over_mac"), None);
        let w: Vec<String> = r.warnings.iter().map(|w| w.to_string()).collect();
        assert!(
            w.iter()
                .any(|w| w.contains("fail-over-mac-policy") && w.contains("not one of")),
            "{w:?}"
        );
        assert!(
            w.iter()
                .any(|w| w.contains("warp-drive") && w.contains("unknown bond option")),
            "{w:?}"
        );
    }

    #[test]
    fn v2_name_globs_drivers_and_combined_matches() {
        let y = r#"
version: 2
ethernets:
  lan:
    match: {name: "eth*"}
    dhcp4: true
  fast:
    match: {driver: ixgbe}
  pinned:
    match: {macaddress: "52:54:00:00:00:09", name: ens9}
  named:
    match: {name: ens3}
  renamed:
    match: {name: "en*", driver: "virtio*"}
    set-name: wan0
  bad:
    match: {name: "eth*\nName=x"}
  hostile:
    match: {name: "*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b"}
"#;
        let (c, r) = parse_v2(y.as_bytes(), "nc").unwrap();
        let l = |id: &str| c.link(id).unwrap();
        assert_eq!(l("lan").match_name.as_deref(), Some("eth*"));
        assert_eq!(l("lan").name, None);
        assert_eq!(l("fast").match_driver.as_deref(), Some("ixgbe"));
        assert_eq!(l("pinned").mac.as_deref(), Some("52:54:00:00:00:09"));
        assert_eq!(l("pinned").match_name.as_deref(), Some("ens9"));
        assert_eq!(l("pinned").name, None, "both must match: not a rename");
        assert_eq!(l("named").name.as_deref(), Some("ens3"));
        assert!(!l("named").has_match_rules());
        assert_eq!(l("renamed").name.as_deref(), Some("wan0"));
        assert_eq!(l("renamed").match_driver.as_deref(), Some("virtio*"));
        assert!(!l("bad").has_match_rules());
        assert!(!l("hostile").has_match_rules());
        let w: Vec<String> = r.warnings.iter().map(|w| w.to_string()).collect();
        assert!(
            w.iter()
                .any(|w| w.starts_with("nc: ethernets.bad.match.name: ")),
            "{w:?}"
        );
        assert!(
            w.iter()
                .any(|w| w.starts_with("nc: ethernets.hostile.match.name: ")
                    && w.contains("at most 64")),
            "{w:?}"
        );
    }
}
