//! Fuzz target: any network model, built straight from the bytes (around the parsers, so ids,
//! names, MACs, bond options and search domains may hold anything: newlines, NUL, `#`, shell
//! characters), rendered for the backend the first byte selects. The renderer either refuses
//! with an error naming a rendered file and a field, or gives files in which every line is one
//! line of its syntax and no drive string carries a line break; a model that passes the model
//! boundary (`check_grammar`) with checked names is never refused. The PowerShell backend's
//! line check also holds every literal closed on its line with nothing expandable inside
//! (quotes of every kind come from the any-character draws; the alphabet is unchanged so the
//! minimised corpus keeps its meaning).
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use primer::model::network::{
    check_ifname, BondKind, BondMode, BondOpt, BondParams, BondValue, BOND_OPTIONS, Ipv6Auto, Link, LinkKind, NetworkConfig, Route,
};
use primer::net::naming::assign_names;
use primer::net::render::{check_lines, try_render, RenderOptions};
use primer::net::Backend;

/// Up to three bonding options with values of any type (a MAC from [`text`]: the renderers
/// must refuse one that is not a word).
fn bond_options(u: &mut Unstructured) -> Result<Vec<BondOpt>> {
    let mut v = Vec::new();
    for _ in 0..u.int_in_range(0..=3)? {
        let spec = u.choose(BOND_OPTIONS)?;
        let value = match (u.int_in_range(0..=4)?, spec.kind) {
            (0, BondKind::Enum(ws)) => BondValue::Word(u.choose(ws)?),
            (0, _) => BondValue::Word("x y"),
            (1, _) => BondValue::Num(u.arbitrary()?),
            (2, _) => BondValue::Bool(u.arbitrary()?),
            (3, _) => BondValue::Ips(vec![u32::from(u.arbitrary::<u32>()?).into()]),
            _ => BondValue::Mac(text(u)?),
        };
        v.push(BondOpt { spec, value });
    }
    Ok(v)
}

/// A short string: mostly from a small alphabet that makes valid and near-valid values, now
/// and then any character (controls, separators, quotes).
fn text(u: &mut Unstructured) -> Result<String> {
    const ALPHA: &[char] = &[
        'a', 'b', 'e', 't', 'h', '0', '1', '.', '-', '_', ':', ' ', '#', ';', '\n', '\0', '$', '"',
        '\\', '/', '=', '\u{85}', '\u{2028}', 'x',
    ];
    let n = u.int_in_range(0..=12)?;
    let mut s = String::new();
    for _ in 0..n {
        if u.ratio(1, 8)? {
            s.push(u.arbitrary::<char>()?);
        } else {
            s.push(*u.choose(ALPHA)?);
        }
    }
    Ok(s)
}

fn id(u: &mut Unstructured, ids: &[String]) -> Result<String> {
    if !ids.is_empty() && u.ratio(3, 4)? {
        Ok(u.choose(ids)?.clone())
    } else {
        text(u)
    }
}

fn model(u: &mut Unstructured) -> Result<NetworkConfig> {
    let n = u.int_in_range(1..=5)?;
    let mut ids: Vec<String> = Vec::new();
    for _ in 0..n {
        ids.push(text(u)?);
    }
    let mut c = NetworkConfig::default();
    for i in 0..n {
        let kind = match u.int_in_range(0..=3)? {
            0 => LinkKind::Physical,
            1 => LinkKind::Bond {
                members: vec![id(u, &ids)?],
                params: BondParams {
                    mode: *u.choose(&BondMode::ALL)?,
                    miimon: u.arbitrary()?,
                    xmit_hash_policy: u.arbitrary::<bool>()?.then(|| text(u)).transpose()?,
                    lacp_rate: u.arbitrary::<bool>()?.then(|| text(u)).transpose()?,
                    primary: u.arbitrary::<bool>()?.then(|| id(u, &ids)).transpose()?,
                    options: bond_options(u)?,
                },
            },
            2 => LinkKind::Vlan {
                parent: id(u, &ids)?,
                vlan_id: u.int_in_range(0..=4094)?,
            },
            _ => LinkKind::Bridge {
                members: vec![id(u, &ids)?],
                stp: u.arbitrary()?,
            },
        };
        let mut l = Link::new(ids[i].clone(), kind);
        l.mac = u.arbitrary::<bool>()?.then(|| text(u)).transpose()?;
        l.name = u.arbitrary::<bool>()?.then(|| text(u)).transpose()?;
        l.mtu = u.arbitrary()?;
        l.l3.dhcp4 = u.arbitrary()?;
        l.l3.ipv6 = *u.choose(&[
            Ipv6Auto::Off,
            Ipv6Auto::Slaac,
            Ipv6Auto::DhcpStateless,
            Ipv6Auto::DhcpStateful,
        ])?;
        if u.arbitrary()? {
            l.l3.addresses.push("192.0.2.10/24".parse().unwrap());
            l.l3.routes.push(Route {
                to: "0.0.0.0/0".parse().unwrap(),
                via: Some("192.0.2.1".parse().unwrap()),
                metric: u.arbitrary()?,
            });
        }
        for _ in 0..u.int_in_range(0..=2)? {
            l.l3.dns.search.push(text(u)?);
        }
        c.links.push(l);
    }
    for _ in 0..u.int_in_range(0..=2)? {
        c.dns.search.push(text(u)?);
    }
    // v2 match rules (name and driver globs), drawn last so the corpus's inputs keep their
    // meaning: networkd and netplan write them, NetworkManager and ifupdown resolve them.
    for l in &mut c.links {
        if matches!(l.kind, LinkKind::Physical) {
            l.match_name = u.arbitrary::<bool>()?.then(|| text(u)).transpose()?;
            l.match_driver = u.arbitrary::<bool>()?.then(|| text(u)).transpose()?;
        }
    }
    Ok(c)
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let mut u = Unstructured::new(rest);
    let Ok(c) = model(&mut u) else { return };
    // Only references that exist (the parsers' `validate` guarantees it; renderers rely on it).
    if primer::net::validate(&c, "fuzz").is_err() && c.check_grammar().is_ok() {
        return;
    }
    let b = Backend::ALL[usize::from(sel) % Backend::ALL.len()];
    // The target's interfaces may hand in a name too (checked by naming, like a parser's).
    let mut host = BTreeMap::new();
    if sel & 4 == 4 {
        if let (Some(m), Ok(n)) = (c.links[0].mac.clone(), text(&mut u)) {
            host.insert(m, n);
        }
    }
    let names = assign_names(&c, &host);
    let opts = RenderOptions {
        netplan_renderer: (sel & 8 == 8).then(|| "NetworkManager".to_string()),
        eni_resolv_conf: sel & 16 == 16,
    };
    let valid = primer::net::validate(&c, "fuzz").is_ok()
        && names
            .links
            .values()
            .all(|n| n.name.as_deref().is_none_or(|n| check_ifname(n).is_ok()));
    match try_render(b, &c, &names, &opts) {
        Ok(r) => {
            for f in &r.files {
                assert_eq!(check_lines(&f.path, &f.content), Ok(()), "{b}: {}", f.path);
            }
        }
        Err(e) => {
            assert!(
                !valid,
                "{b}: a model that passes the boundary was refused: {e}"
            );
            // The error names a file the backend owns: one in its directory, or one of its
            // single extra files (ifupdown's `etc/resolv.conf`).
            let owned = primer::net::render::owned(b);
            assert!(
                e.file.starts_with(owned.dir) || owned.extra.contains(&e.file.as_str()),
                "{e}"
            );
            assert!(!e.to_string().contains('\n'), "{e:?}");
        }
    }
});
