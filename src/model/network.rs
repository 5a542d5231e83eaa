//! The typed network IR every input converts into (OpenStack `network_data.json`, network
//! config v1 and v2) and every renderer reads (networkd, NetworkManager, ifupdown, netplan).
//! Pure data with small helpers: no parsing of drive formats (that is `net/`), no I/O.
//!
//! Shape: a flat list of links (physical, bond, VLAN, bridge), each carrying its own layer-3
//! configuration (static addresses with prefix, DHCPv4, the IPv6 autoconfiguration mode,
//! routes, DNS), plus DNS that applies to the whole machine. Links refer to each other by `id`
//! (the source's identifier), never by OS name: naming happens later against the target.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::Serialize;

use super::grammar::{self, GrammarError};

/// A JSON document of the drive (`network_data.json`) as the instance holds it: a small one
/// parsed, a large one as the drive file's text (shared with the drive, no copy), parsed
/// again by each reader. A parsed document is ~10 times its text (14,000 links: 8.4 MiB of
/// `serde_json` maps for 0.9 MB of text) and was held all run, while the plan reads it once
/// (its model, its hash) and `instance.json` once (issue 15); a small one is kept parsed, as
/// parsing it again would cost more than it holds. Every reader gets the same document: the
/// text is what the source parsed, and parses to the same value again.
#[derive(Clone, PartialEq, Eq)]
pub enum JsonDoc {
    Parsed(serde_json::Value),
    Text(super::Bytes),
}

impl JsonDoc {
    /// Largest text kept parsed.
    pub const KEEP_PARSED: usize = 64 << 10;

    /// `value`: what `text` parsed to.
    pub fn new(text: super::Bytes, value: serde_json::Value) -> JsonDoc {
        if text.len() <= JsonDoc::KEEP_PARSED {
            JsonDoc::Parsed(value)
        } else {
            JsonDoc::Text(text)
        }
    }

    /// The document, borrowed when it is held parsed (`Null` only if the drive's file can no
    /// longer be read).
    pub fn value(&self) -> std::borrow::Cow<'_, serde_json::Value> {
        match self {
            JsonDoc::Parsed(v) => std::borrow::Cow::Borrowed(v),
            JsonDoc::Text(t) => {
                std::borrow::Cow::Owned(serde_json::from_slice(t).unwrap_or_default())
            }
        }
    }
}

impl From<serde_json::Value> for JsonDoc {
    /// A document made in code (tests, builders): its text is `serde_json`'s.
    fn from(v: serde_json::Value) -> JsonDoc {
        JsonDoc::new(serde_json::to_vec(&v).unwrap_or_default().into(), v)
    }
}

impl fmt::Debug for JsonDoc {
    /// As the document (what the instance showed when it held it parsed).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.value().fmt(f)
    }
}

impl Serialize for JsonDoc {
    /// As the document: a text is written piece by piece ([`JsonText`]), never parsed whole
    /// (`instance.json` holds the document; parsed whole it was the run's peak, issue 15).
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            JsonDoc::Parsed(v) => v.serialize(s),
            JsonDoc::Text(t) => match json_split(t) {
                Some(split) => write_split(split, s),
                // The drive's file can no longer be read whole (a changed device): `null`, as
                // `value()` gives, inside a valid document; not an error that would leave the
                // whole document unwritable.
                None => serde_json::Value::Null.serialize(s),
            },
        }
    }
}

/// The text of one JSON value, serialised as the `serde_json::Value` it parses to (same calls,
/// same order: an object's keys sorted, as `Value`'s map holds them) without holding that
/// `Value` whole: a large array or object is split at its members and each member written in
/// turn, a small one (or a scalar) parsed and written. The text is what `serde_json` parsed
/// before (a `JsonDoc`'s), so it is valid JSON; text that is not is an error, never a panic.
struct JsonText<'a>(&'a [u8]);

impl JsonText<'_> {
    /// Largest text parsed whole: a member of the document (a link, a network) is parsed at
    /// once, a list of thousands of them is not.
    const WHOLE: usize = 4 << 10;
}

impl Serialize for JsonText<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::Error;
        // Split outside the generic writer: only the writing is compiled per serializer.
        write_split(
            json_split(self.0).ok_or_else(|| S::Error::custom("invalid JSON text"))?,
            s,
        )
    }
}

/// Writes one split JSON text ([`JsonText`]).
fn write_split<S: serde::Serializer>(split: Split<'_>, s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::{SerializeMap, SerializeSeq};
    match split {
        Split::Whole(v) => v.serialize(s),
        Split::Seq(items) => {
            let mut seq = s.serialize_seq(Some(items.len()))?;
            for v in items {
                seq.serialize_element(&JsonText(v))?;
            }
            seq.end()
        }
        Split::Map(items) => {
            let mut map = s.serialize_map(Some(items.len()))?;
            for (k, v) in &items {
                map.serialize_entry(k, &JsonText(v))?;
            }
            map.end()
        }
    }
}

/// A JSON value's text as [`JsonText`] writes it.
enum Split<'a> {
    /// Small, or not an array or object: parsed.
    Whole(serde_json::Value),
    /// An array's members' texts.
    Seq(Vec<&'a [u8]>),
    /// An object's keys (decoded, sorted, each once) with their values' texts.
    Map(Vec<(String, &'a [u8])>),
}

/// Splits `t` ([`Split`]); `None` when it is not valid JSON.
fn json_split(t: &[u8]) -> Option<Split<'_>> {
    let t = t.trim_ascii();
    let open = t.first().copied().filter(|_| t.len() > JsonText::WHOLE);
    if !matches!(open, Some(b'[' | b'{')) {
        return serde_json::from_slice(t).ok().map(Split::Whole);
    }
    let members = json_members(t)?;
    if open == Some(b'[') {
        return Some(Split::Seq(members.into_iter().map(|(_, v)| v).collect()));
    }
    let mut keyed = Vec::with_capacity(members.len());
    for (k, v) in members {
        match serde_json::from_slice(k).ok()? {
            serde_json::Value::String(k) => keyed.push((k, v)),
            _ => return None,
        }
    }
    // Sorted, as `Value`'s map holds its keys; a repeated key (never from a drive: the source
    // refuses them) keeps its last value, as a parse into a map does (the sort is stable).
    crate::sort::sort_by(&mut keyed, |a, b| a.0.cmp(&b.0));
    let mut out: Vec<(String, &[u8])> = Vec::with_capacity(keyed.len());
    for (k, v) in keyed {
        if out.last().is_some_and(|l| l.0 == k) {
            out.pop();
        }
        out.push((k, v));
    }
    Some(Split::Map(out))
}

/// The members of the JSON array or object `t` (its whole text, no surrounding white space):
/// each value's text and, in an object, its key's (quoted) text. `None` when `t` is not one
/// array or object (its brackets are checked here; what lies inside each member is checked
/// by whoever reads the member).
fn json_members(t: &[u8]) -> Option<Vec<(&[u8], &[u8])>> {
    let ws = |mut i: usize| {
        while t.get(i).is_some_and(|b| b.is_ascii_whitespace()) {
            i += 1;
        }
        i
    };
    let (object, close) = match t.first()? {
        b'{' => (true, b'}'),
        _ => (false, b']'),
    };
    let mut out = Vec::new();
    let mut i = ws(1);
    if t.get(i) == Some(&close) {
        return (i + 1 == t.len()).then_some(out);
    }
    loop {
        let mut key: &[u8] = &[];
        if object {
            let end = json_value_end(t, i)?;
            key = &t[i..end];
            i = ws(end);
            if t.get(i) != Some(&b':') {
                return None;
            }
            i = ws(i + 1);
        }
        let end = json_value_end(t, i)?;
        out.push((key, t.get(i..end).filter(|v| !v.is_empty())?));
        i = ws(end);
        match t.get(i)? {
            b',' => i = ws(i + 1),
            b if *b == close => return (i + 1 == t.len()).then_some(out),
            _ => return None,
        }
    }
}

/// Where the JSON value that starts at `i` of `t` ends: after its closing bracket or quote,
/// or (a number, `true`...) at the first byte that cannot continue it.
fn json_value_end(t: &[u8], mut i: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut in_str = false;
    while let Some(&b) = t.get(i) {
        if in_str {
            match b {
                b'\\' => i += 1,
                b'"' => in_str = false,
                _ => {}
            }
        } else {
            match b {
                b'"' => in_str = true,
                b'[' | b'{' => depth += 1,
                b']' | b'}' if depth == 0 => return Some(i),
                b']' | b'}' => depth -= 1,
                b',' | b':' if depth == 0 => return Some(i),
                _ if depth == 0 && b.is_ascii_whitespace() => return Some(i),
                _ => {}
            }
        }
        i += 1;
        if depth == 0 && !in_str && matches!(b, b'"' | b']' | b'}') {
            return Some(i);
        }
    }
    (depth == 0 && !in_str).then_some(i)
}

/// The whole network description of one instance.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct NetworkConfig {
    /// In source order; members and parents may come before or after the links using them.
    pub links: Vec<Link>,
    /// DNS that is not tied to one link (top-level services, `nameserver` entries).
    pub dns: Dns,
}

impl NetworkConfig {
    pub fn link(&self, id: &str) -> Option<&Link> {
        self.links.iter().find(|l| l.id == id)
    }
    pub fn is_empty(&self) -> bool {
        self.links.is_empty()
    }
    /// The bond or bridge a link is a member of, if any.
    pub fn controller_of(&self, id: &str) -> Option<&Link> {
        self.links
            .iter()
            .find(|l| l.kind.members().iter().any(|m| m == id))
    }
}

/// Lookups by link id from maps built once, for callers that ask per link.
/// [`NetworkConfig::link`] and [`NetworkConfig::controller_of`] scan every link: asked per link
/// that is quadratic in links, and a VLAN parent chain walked per link cubic — a
/// `network_data.json` within its 1 MiB cap holds thousands of chained VLANs (2,000 took 10 s
/// of CPU; issue 15: linear in NICs). Answers equal the scanning methods' (the first link of an
/// id, the first bond or bridge naming a member).
pub struct LinkIndex<'a> {
    links: &'a [Link],
    by_id: HashMap<&'a str, usize>,
    controller: HashMap<&'a str, usize>,
}

/// What [`LinkIndex::vlan_chains`] finds for each link.
pub struct VlanChains {
    /// Hops up the link's VLAN parent chain: 0 for a link that is not a VLAN or whose parent
    /// is missing; `links + 1` for a chain that never ends (a parent cycle), as the bounded walk
    /// it replaces counted.
    pub depth: Vec<usize>,
    /// Whether the chain from the link comes back to it (a VLAN that is its own ancestor).
    pub on_cycle: Vec<bool>,
}

impl<'a> LinkIndex<'a> {
    pub fn new(c: &'a NetworkConfig) -> LinkIndex<'a> {
        let mut by_id = HashMap::with_capacity(c.links.len());
        let mut controller = HashMap::new();
        for (i, l) in c.links.iter().enumerate() {
            by_id.entry(l.id.as_str()).or_insert(i);
            for m in l.kind.members() {
                controller.entry(m.as_str()).or_insert(i);
            }
        }
        LinkIndex {
            links: &c.links,
            by_id,
            controller,
        }
    }

    /// Where the first link with this id is.
    pub fn position(&self, id: &str) -> Option<usize> {
        self.by_id.get(id).copied()
    }

    /// [`NetworkConfig::link`].
    pub fn link(&self, id: &str) -> Option<&'a Link> {
        self.position(id).map(|i| &self.links[i])
    }

    /// [`NetworkConfig::controller_of`].
    pub fn controller_of(&self, id: &str) -> Option<&'a Link> {
        self.controller.get(id).map(|&i| &self.links[i])
    }

    /// Every link's VLAN chain, each link visited once: a chain already measured ends the walk
    /// of every link below it.
    pub fn vlan_chains(&self) -> VlanChains {
        let n = self.links.len();
        let cap = n + 1;
        let next = |i: usize| match &self.links[i].kind {
            LinkKind::Vlan { parent, .. } => self.position(parent),
            _ => None,
        };
        // 0: not seen, 1: on the walk in progress, 2: measured.
        let mut state = vec![0u8; n];
        let mut depth = vec![0usize; n];
        let mut on_cycle = vec![false; n];
        let mut path = Vec::new();
        for start in 0..n {
            if state[start] == 2 {
                continue;
            }
            path.clear();
            let mut cur = start;
            // The depth of the node after the path's last: `None` when the chain ends there.
            let below = loop {
                state[cur] = 1;
                path.push(cur);
                match next(cur) {
                    None => break None,
                    Some(p) if state[p] == 2 => break Some(depth[p]),
                    Some(p) if state[p] == 1 => {
                        // A cycle: `p` and every node after it on the path are on it; every
                        // node of the walk reaches it, so its chain never ends.
                        if let Some(at) = path.iter().position(|&x| x == p) {
                            for &x in &path[at..] {
                                on_cycle[x] = true;
                            }
                        }
                        break Some(cap);
                    }
                    Some(p) => cur = p,
                }
            };
            let mut d = below.map_or(0, |b| (b + 1).min(cap));
            for &x in path.iter().rev() {
                depth[x] = d;
                state[x] = 2;
                d = (d + 1).min(cap);
            }
        }
        VlanChains { depth, on_cycle }
    }
}

/// One interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Link {
    /// The source's identifier (nova's tap name or `interface0`, a v1 name, a v2 key).
    pub id: String,
    pub kind: LinkKind,
    /// Lower-case `aa:bb:cc:dd:ee:ff`. For a physical link, the NIC to match; for a virtual
    /// link, the address to set on it.
    pub mac: Option<String>,
    /// The OS interface name the source asks for (`name`, `set-name`, a v1 name).
    pub name: Option<String>,
    /// netplan v2 `match: {name: GLOB}` of a physical link: a shell-style glob ([`check_glob`])
    /// the interface's name must match (with `mac` and `match_driver`, every given property
    /// must match). A literal name without a MAC or driver stays in `name`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub match_name: Option<String>,
    /// netplan v2 `match: {driver: GLOB}`: the kernel driver's name must match.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub match_driver: Option<String>,
    pub mtu: Option<u32>,
    pub l3: L3,
}

impl Link {
    pub fn new(id: impl Into<String>, kind: LinkKind) -> Link {
        Link {
            id: id.into(),
            kind,
            mac: None,
            name: None,
            match_name: None,
            match_driver: None,
            mtu: None,
            l3: L3::default(),
        }
    }
    /// A physical link matched by a name glob or a driver: the renderers with match rules
    /// (networkd, netplan) write the match; NetworkManager and ifupdown resolve it against the
    /// target's interfaces first ([`crate::net::naming::expand_matches`]).
    pub fn has_match_rules(&self) -> bool {
        matches!(self.kind, LinkKind::Physical)
            && (self.match_name.is_some() || self.match_driver.is_some())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum LinkKind {
    Physical,
    Bond {
        /// Member link ids.
        members: Vec<String>,
        params: BondParams,
    },
    Vlan {
        /// The parent link id (a physical link or a bond).
        parent: String,
        vlan_id: u16,
    },
    Bridge {
        members: Vec<String>,
        stp: Option<bool>,
    },
}

impl LinkKind {
    pub fn members(&self) -> &[String] {
        match self {
            LinkKind::Bond { members, .. } | LinkKind::Bridge { members, .. } => members,
            _ => &[],
        }
    }
    pub fn name(&self) -> &'static str {
        match self {
            LinkKind::Physical => "physical",
            LinkKind::Bond { .. } => "bond",
            LinkKind::Vlan { .. } => "vlan",
            LinkKind::Bridge { .. } => "bridge",
        }
    }
}

/// Bonding driver modes (kernel names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum BondMode {
    #[serde(rename = "balance-rr")]
    BalanceRr,
    #[serde(rename = "active-backup")]
    ActiveBackup,
    #[serde(rename = "balance-xor")]
    BalanceXor,
    #[serde(rename = "broadcast")]
    Broadcast,
    #[serde(rename = "802.3ad")]
    Lacp,
    #[serde(rename = "balance-tlb")]
    BalanceTlb,
    #[serde(rename = "balance-alb")]
    BalanceAlb,
}

impl BondMode {
    pub const ALL: [BondMode; 7] = [
        BondMode::BalanceRr,
        BondMode::ActiveBackup,
        BondMode::BalanceXor,
        BondMode::Broadcast,
        BondMode::Lacp,
        BondMode::BalanceTlb,
        BondMode::BalanceAlb,
    ];
    /// The kernel's name (`802.3ad`, `active-backup`...).
    pub fn as_str(self) -> &'static str {
        match self {
            BondMode::BalanceRr => "balance-rr",
            BondMode::ActiveBackup => "active-backup",
            BondMode::BalanceXor => "balance-xor",
            BondMode::Broadcast => "broadcast",
            BondMode::Lacp => "802.3ad",
            BondMode::BalanceTlb => "balance-tlb",
            BondMode::BalanceAlb => "balance-alb",
        }
    }
    /// Accepts the kernel's names and numbers (`0`..`6`), case-insensitively.
    pub fn parse(s: &str) -> Option<BondMode> {
        let s = s.trim().to_ascii_lowercase();
        if let Ok(n) = s.parse::<usize>() {
            return BondMode::ALL.get(n).copied();
        }
        BondMode::ALL.into_iter().find(|m| m.as_str() == s)
    }
}

impl fmt::Display for BondMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BondParams {
    pub mode: BondMode,
    /// MII link monitoring interval, milliseconds.
    pub miimon: Option<u32>,
    /// `layer2`, `layer3+4`, `layer2+3`, `encap2+3`, `encap3+4`.
    pub xmit_hash_policy: Option<String>,
    /// `slow` or `fast` (802.3ad).
    pub lacp_rate: Option<String>,
    /// Preferred member id (active-backup).
    pub primary: Option<String>,
    /// Every other option of the kernel's bonding driver the source gives, typed and checked
    /// against [`BOND_OPTIONS`], in the key order of the source's mapping, one per option.
    pub options: Vec<BondOpt>,
}

impl BondParams {
    pub fn new(mode: BondMode) -> BondParams {
        BondParams {
            mode,
            miimon: None,
            xmit_hash_policy: None,
            lacp_rate: None,
            primary: None,
            options: Vec::new(),
        }
    }
    /// The value of a kernel option (`updelay`...), if given.
    pub fn option(&self, kernel: &str) -> Option<&BondValue> {
        self.options
            .iter()
            .find(|o| o.spec.kernel == kernel)
            .map(|o| &o.value)
    }
    /// Sets an option, replacing an earlier value of the same option.
    pub fn set_option(&mut self, spec: &'static BondOptSpec, value: BondValue) {
        self.options.retain(|o| o.spec.kernel != spec.kernel);
        self.options.push(BondOpt { spec, value });
    }
}

/// One bonding driver option with its typed value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BondOpt {
    #[serde(serialize_with = "ser_spec")]
    pub spec: &'static BondOptSpec,
    pub value: BondValue,
}

fn ser_spec<S: serde::Serializer>(s: &&'static BondOptSpec, ser: S) -> Result<S::Ok, S::Error> {
    ser.serialize_str(s.kernel)
}

/// A typed bond option value: never a drive string, so nothing of it needs escaping.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum BondValue {
    /// A count, or a time in milliseconds ([`BondKind::Millis`]).
    Num(u32),
    /// One keyword of the option's closed set (the kernel's name).
    Word(&'static str),
    Bool(bool),
    /// IPv4 ARP targets (at most [`BOND_ARP_TARGETS_MAX`], the kernel's limit).
    Ips(Vec<std::net::Ipv4Addr>),
    /// A MAC address in the model's form.
    Mac(String),
}

/// The kernel's limit of ARP targets per bond.
pub const BOND_ARP_TARGETS_MAX: usize = 16;

/// What values a bonding option takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BondKind {
    /// A number in `min..=max`.
    Num(u32, u32),
    /// Milliseconds (`0..=i32::MAX`).
    Millis,
    /// The kernel's keywords; a number picks by index, as sysfs accepts.
    Enum(&'static [&'static str]),
    /// `0`/`1` in sysfs.
    Bool,
    Ips,
    Mac,
}

/// One option of the kernel bonding driver (Documentation/networking/bonding.rst) and how each
/// backend spells it (`None`: the backend cannot express it, which is warned, naming the
/// option and the backend). ifupdown's `bond-*` name is the kernel's with `-` for `_`
/// (ifenslave writes it to sysfs), unless `eni` is false.
#[derive(Debug, PartialEq, Eq)]
pub struct BondOptSpec {
    pub kernel: &'static str,
    pub kind: BondKind,
    pub networkd: Option<&'static str>,
    pub netplan: Option<&'static str>,
    /// NetworkManager's `[bond]` takes the kernel names.
    pub nm: bool,
    /// Debian's ifenslave knows the option.
    pub eni: bool,
}

const MS: BondKind = BondKind::Millis;
const fn o(
    kernel: &'static str,
    kind: BondKind,
    networkd: Option<&'static str>,
    netplan: Option<&'static str>,
    nm: bool,
    eni: bool,
) -> BondOptSpec {
    BondOptSpec {
        kernel,
        kind,
        networkd,
        netplan,
        nm,
        eni,
    }
}

/// The bonding options besides `mode`, `miimon`, `xmit_hash_policy`, `lacp_rate` and
/// `primary` (typed fields of [`BondParams`]).
pub static BOND_OPTIONS: &[BondOptSpec] = &[
    o(
        "updelay",
        MS,
        Some("UpDelaySec"),
        Some("up-delay"),
        true,
        true,
    ),
    o(
        "downdelay",
        MS,
        Some("DownDelaySec"),
        Some("down-delay"),
        true,
        true,
    ),
    o(
        "ad_select",
        BondKind::Enum(&["stable", "bandwidth", "count"]),
        Some("AdSelect"),
        Some("ad-select"),
        true,
        true,
    ),
    o(
        "ad_actor_sys_prio",
        BondKind::Num(1, 65535),
        Some("AdActorSystemPriority"),
        None,
        true,
        true,
    ),
    o(
        "ad_user_port_key",
        BondKind::Num(0, 1023),
        Some("AdUserPortKey"),
        None,
        true,
        true,
    ),
    o(
        "ad_actor_system",
        BondKind::Mac,
        Some("AdActorSystem"),
        None,
        true,
        true,
    ),
    o(
        "arp_interval",
        MS,
        Some("ARPIntervalSec"),
        Some("arp-interval"),
        true,
        true,
    ),
    o(
        "arp_ip_target",
        BondKind::Ips,
        Some("ARPIPTargets"),
        Some("arp-ip-targets"),
        true,
        true,
    ),
    o(
        "arp_validate",
        BondKind::Enum(&[
            "none",
            "active",
            "backup",
            "all",
            "filter",
            "filter_active",
            "filter_backup",
        ]),
        Some("ARPValidate"),
        Some("arp-validate"),
        true,
        true,
    ),
    o(
        "arp_all_targets",
        BondKind::Enum(&["any", "all"]),
        Some("ARPAllTargets"),
        Some("arp-all-targets"),
        true,
        true,
    ),
    o(
        "fail_over_mac",
        BondKind::Enum(&["none", "active", "follow"]),
        Some("FailOverMACPolicy"),
        Some("fail-over-mac-policy"),
        true,
        true,
    ),
    // `num_unsol_na` is the kernel's other name of this one setting; parsers map it here.
    o(
        "num_grat_arp",
        BondKind::Num(0, 255),
        Some("GratuitousARP"),
        Some("gratuitous-arp"),
        true,
        true,
    ),
    o(
        "primary_reselect",
        BondKind::Enum(&["always", "better", "failure"]),
        Some("PrimaryReselectPolicy"),
        Some("primary-reselect-policy"),
        true,
        true,
    ),
    o("use_carrier", BondKind::Bool, None, None, true, true),
    o(
        "min_links",
        BondKind::Num(0, 65535),
        Some("MinLinks"),
        Some("min-links"),
        true,
        true,
    ),
    o(
        "resend_igmp",
        BondKind::Num(0, 255),
        Some("ResendIGMP"),
        Some("resend-igmp"),
        true,
        true,
    ),
    o(
        "lp_interval",
        BondKind::Num(1, 0x7fff_ffff),
        Some("LearnPacketIntervalSec"),
        Some("learn-packet-interval"),
        true,
        true,
    ),
    o(
        "packets_per_slave",
        BondKind::Num(0, 65535),
        Some("PacketsPerSlave"),
        Some("packets-per-member"),
        true,
        true,
    ),
    o(
        "all_slaves_active",
        BondKind::Bool,
        Some("AllSlavesActive"),
        Some("all-members-active"),
        true,
        true,
    ),
    o(
        "tlb_dynamic_lb",
        BondKind::Bool,
        Some("DynamicTransmitLoadBalancing"),
        None,
        true,
        true,
    ),
    o(
        "peer_notif_delay",
        MS,
        Some("PeerNotifyDelaySec"),
        None,
        true,
        false,
    ),
];

/// The spec of a kernel option name.
pub fn bond_option(kernel: &str) -> Option<&'static BondOptSpec> {
    BOND_OPTIONS.iter().find(|s| s.kernel == kernel)
}

impl BondOptSpec {
    /// Parses a source's value: numbers as numbers (or numeric strings), keywords
    /// case-insensitively (or the kernel's index), booleans as `0`/`1`/`true`/`false`/`yes`/
    /// `no`/`on`/`off`, IPv4 targets as a list or a string split on `,` and white space, a MAC
    /// in any form [`normalize_mac`] takes. `millis` converts a time with units. An error says
    /// what was expected (the caller names the field).
    pub fn parse(
        &'static self,
        v: &serde_json::Value,
        millis: impl Fn(&serde_json::Value) -> Option<u32>,
    ) -> Result<BondValue, String> {
        use serde_json::Value;
        let text = match v {
            Value::String(s) => Some(s.trim().to_string()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(if *b { "1" } else { "0" }.to_string()),
            _ => None,
        };
        let num = |t: &Option<String>| t.as_deref().and_then(|t| t.parse::<u64>().ok());
        match self.kind {
            BondKind::Num(lo, hi) => match num(&text) {
                Some(n) if n >= u64::from(lo) && n <= u64::from(hi) => Ok(BondValue::Num(n as u32)),
                _ => Err(format!("not a number in {lo}-{hi}")),
            },
            BondKind::Millis => match millis(v) {
                Some(n) if n <= i32::MAX as u32 => Ok(BondValue::Num(n)),
                _ => Err("not a time in milliseconds".into()),
            },
            BondKind::Enum(words) => {
                let t = text.unwrap_or_default().to_ascii_lowercase();
                if let Ok(i) = t.parse::<usize>() {
                    if let Some(w) = words.get(i) {
                        return Ok(BondValue::Word(w));
                    }
                }
                words
                    .iter()
                    .find(|w| **w == t)
                    .map(|w| BondValue::Word(w))
                    .ok_or_else(|| format!("not one of {}", words.join(", ")))
            }
            BondKind::Bool => match text.unwrap_or_default().to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => Ok(BondValue::Bool(true)),
                "0" | "false" | "no" | "off" => Ok(BondValue::Bool(false)),
                _ => Err("not a boolean (0 or 1)".into()),
            },
            BondKind::Ips => {
                let parts: Vec<String> = match v {
                    Value::Array(a) => a
                        .iter()
                        .map(|x| x.as_str().map(str::to_string).unwrap_or_default())
                        .collect(),
                    _ => text
                        .unwrap_or_default()
                        .split(|c: char| c == ',' || c.is_whitespace())
                        .filter(|x| !x.is_empty())
                        .map(str::to_string)
                        .collect(),
                };
                if parts.is_empty() || parts.len() > BOND_ARP_TARGETS_MAX {
                    return Err(format!("not 1 to {BOND_ARP_TARGETS_MAX} IPv4 addresses"));
                }
                parts
                    .iter()
                    .map(|p| p.trim().parse::<std::net::Ipv4Addr>())
                    .collect::<Result<Vec<_>, _>>()
                    .map(BondValue::Ips)
                    .map_err(|_| "not a list of IPv4 addresses".into())
            }
            BondKind::Mac => text
                .as_deref()
                .and_then(normalize_mac)
                .map(BondValue::Mac)
                .ok_or_else(|| "not a MAC address".into()),
        }
    }
}

impl BondValue {
    /// The value as sysfs, NetworkManager and ifenslave take it (`sep` between ARP targets).
    pub fn kernel(&self, sep: &str) -> String {
        match self {
            BondValue::Num(n) => n.to_string(),
            BondValue::Word(w) => (*w).to_string(),
            BondValue::Bool(b) => u8::from(*b).to_string(),
            BondValue::Ips(v) => v
                .iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join(sep),
            BondValue::Mac(m) => m.clone(),
        }
    }
}

/// How IPv6 is configured automatically on a link.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Ipv6Auto {
    /// No router advertisements, no DHCPv6: only static addresses (if any).
    #[default]
    Off,
    /// Router advertisements on (SLAAC), no DHCPv6 client.
    Slaac,
    /// Router advertisements for addresses, DHCPv6 for other information only.
    DhcpStateless,
    /// Addresses from DHCPv6 (router advertisements still give the default route).
    DhcpStateful,
}

impl Ipv6Auto {
    /// Whether router advertisements are accepted.
    pub fn accept_ra(self) -> bool {
        self != Ipv6Auto::Off
    }
    /// The stronger of two modes (stateful > stateless > SLAAC > off): when two networks on
    /// one link ask for different modes, the one that configures more wins.
    pub fn max_mode(self, other: Ipv6Auto) -> Ipv6Auto {
        let rank = |m: Ipv6Auto| match m {
            Ipv6Auto::Off => 0,
            Ipv6Auto::Slaac => 1,
            Ipv6Auto::DhcpStateless => 2,
            Ipv6Auto::DhcpStateful => 3,
        };
        if rank(other) > rank(self) {
            other
        } else {
            self
        }
    }
}

/// Layer-3 configuration of one link.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct L3 {
    /// Static addresses with their prefix, in source order.
    pub addresses: Vec<IpNet>,
    pub dhcp4: bool,
    pub ipv6: Ipv6Auto,
    pub routes: Vec<Route>,
    pub dns: Dns,
}

impl L3 {
    /// Whether the link carries any layer-3 configuration.
    pub fn is_configured(&self) -> bool {
        !self.addresses.is_empty() || self.dhcp4 || self.ipv6 != Ipv6Auto::Off
    }
    pub fn has_v4(&self) -> bool {
        self.dhcp4 || self.addresses.iter().any(|a| matches!(a, IpNet::V4(_)))
    }
    pub fn has_v6(&self) -> bool {
        self.ipv6 != Ipv6Auto::Off || self.addresses.iter().any(|a| matches!(a, IpNet::V6(_)))
    }
    /// Adds a route unless an identical one is there.
    pub fn add_route(&mut self, r: Route) {
        if !self.routes.contains(&r) {
            self.routes.push(r);
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Route {
    /// Destination; `0.0.0.0/0` or `::/0` for a default route.
    pub to: IpNet,
    pub via: Option<IpAddr>,
    pub metric: Option<u32>,
}

impl Route {
    pub fn is_default(&self) -> bool {
        self.to.prefix_len() == 0
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Dns {
    pub nameservers: Vec<IpAddr>,
    pub search: Vec<String>,
}

impl Dns {
    pub fn is_empty(&self) -> bool {
        self.nameservers.is_empty() && self.search.is_empty()
    }
    pub fn add_server(&mut self, a: IpAddr) {
        if !self.nameservers.contains(&a) {
            self.nameservers.push(a);
        }
    }
    /// Adds a search domain unless it is there. Refused (nothing added) unless it is a DNS
    /// name ([`check_search_domain`]): this is the gate every parser goes through, so no
    /// search list of the model can carry a newline, a comment character or a space.
    pub fn add_search(&mut self, s: &str) -> Result<(), GrammarError> {
        let s = Dns::search_form(s)?;
        if !self.search.iter().any(|x| x == s) {
            self.search.push(s.to_string());
        }
        Ok(())
    }
    /// A search domain as [`add_search`](Dns::add_search) stores it, or why it is refused.
    pub fn search_form(s: &str) -> Result<&str, GrammarError> {
        // Input is trimmed here; what is stored is then checked as written (`check_grammar`).
        let s = s.trim();
        check_search_domain(s)?;
        Ok(s.trim_end_matches('.'))
    }
    /// This set followed by what `other` adds.
    pub fn merged(&self, other: &Dns) -> Dns {
        let mut d = self.clone();
        d.extend(other);
        d
    }
    /// Adds what `other` adds, in its order: as [`add_server`](Dns::add_server) and
    /// [`add_search`](Dns::add_search) per item, with what is here looked up in a set built
    /// once (a search of the list per item was quadratic: every link's DNS merged with
    /// thousands of machine-wide servers, issue 15).
    pub fn extend(&mut self, other: &Dns) {
        if other.is_empty() {
            return;
        }
        let mut servers: std::collections::HashSet<IpAddr> =
            self.nameservers.iter().copied().collect();
        for a in &other.nameservers {
            if servers.insert(*a) {
                self.nameservers.push(*a);
            }
        }
        let mut search: std::collections::HashSet<String> = self.search.iter().cloned().collect();
        for s in &other.search {
            // Both sets passed `add_search`; one invalid by direct construction is left out
            // here and refused by the renderers' own check of `self.search`.
            if let Ok(s) = Dns::search_form(s) {
                if !search.contains(s) {
                    search.insert(s.to_string());
                    self.search.push(s.to_string());
                }
            }
        }
    }
}

/// Normalises a MAC address to lower-case colon form; `None` when it is not 6 octets.
/// One allocation (the result): every NIC of every drive passes here, and again in the
/// renderers' and the model's checks.
pub fn normalize_mac(s: &str) -> Option<String> {
    mac_octets(s).map(|o| format_mac(&o))
}

/// The six octets of a MAC address written as six groups of one or two hex digits separated
/// by `:` (or, when the text holds no `:`, by `-`), surrounding white space ignored.
fn mac_octets(s: &str) -> Option<[u8; 6]> {
    let s = s.trim();
    let sep = if s.contains(':') {
        ':'
    } else if s.contains('-') {
        '-'
    } else {
        return None;
    };
    let mut out = [0u8; 6];
    let mut n = 0;
    for p in s.split(sep) {
        if n == out.len() || p.is_empty() || p.len() > 2 {
            return None;
        }
        let mut v = 0u8;
        for b in p.bytes() {
            // At most two digits: never overflows.
            v = (v << 4) | hex_digit(b)?;
        }
        out[n] = v;
        n += 1;
    }
    (n == out.len()).then_some(out)
}

/// The value of one ASCII hex digit.
fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Six octets in the model's form, `aa:bb:cc:dd:ee:ff`.
fn format_mac(o: &[u8; 6]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    // Filled in place, one allocation: pushing character by character cost ~2,000
    // instructions per address (callgrind; a drive with many NICs normalises each MAC).
    let mut out = [b':'; 17];
    for (i, b) in o.iter().enumerate() {
        out[3 * i] = DIGITS[usize::from(b >> 4)];
        out[3 * i + 1] = DIGITS[usize::from(b & 0xf)];
    }
    // Hex digits and `:` only: always ASCII, never replaced.
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether `s` is already in the model's form (what [`normalize_mac`] gives back unchanged):
/// 17 bytes, six pairs of lower-case hex digits joined by `:`. Checked in place, no allocation.
fn is_model_mac(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 17
        && b.iter().enumerate().all(|(i, &c)| {
            if i % 3 == 2 {
                c == b':'
            } else {
                c.is_ascii_digit() || (b'a'..=b'f').contains(&c)
            }
        })
}

/// Whether `s` is usable as a Linux interface name: see [`check_ifname`].
pub fn valid_ifname(s: &str) -> bool {
    check_ifname(s).is_ok()
}

/// Longest interface name (IFNAMSIZ 16 with the NUL).
pub const IFNAME_MAX: usize = 15;

/// `s` is an interface name primer writes into a configuration file: 1 to 15 bytes of ASCII
/// letters, digits, `-`, `_`, `.` and `@`, not starting with `-` or `.`. Narrower than the
/// kernel (which takes any byte but `/`, `:` and white space): the name lands unquoted in
/// ifupdown `up` lines that `/bin/sh` runs, in `ip` arguments and in key files, so it must be
/// one shell word, never an option and never a comment.
pub fn check_ifname(s: &str) -> Result<(), GrammarError> {
    if s.is_empty() {
        return Err(GrammarError::Empty);
    }
    if s.len() > IFNAME_MAX {
        return Err(GrammarError::TooLong {
            len: s.len(),
            max: IFNAME_MAX,
        });
    }
    grammar::line_safe(s)?;
    if let Some((at, ch)) = s
        .char_indices()
        .find(|(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@')))
    {
        return Err(GrammarError::Forbidden {
            ch,
            at,
            why: "is not a letter, digit, '-', '_', '.' or '@' of an interface name",
        });
    }
    if let Some(ch) = s.chars().next().filter(|c| matches!(c, '-' | '.')) {
        return Err(GrammarError::Forbidden {
            ch,
            at: 0,
            why: "cannot start an interface name",
        });
    }
    Ok(())
}

/// Longest link id accepted (nova's tap names, Ironic's port UUIDs and v1/v2 names are far
/// shorter).
pub const LINK_ID_MAX: usize = 255;

/// `s` is usable as a link id: 1 to 255 bytes on one line. Ids name links in warnings and
/// derive file names and NetworkManager connection ids (through `render::safe_id`, which keeps
/// only `[A-Za-z0-9_.-]`); renderers never write an id itself into a file. A link whose id
/// fails is dropped (everything about the link hangs on its id).
pub fn check_link_id(s: &str) -> Result<(), GrammarError> {
    if s.is_empty() {
        return Err(GrammarError::Empty);
    }
    if s.len() > LINK_ID_MAX {
        return Err(GrammarError::TooLong {
            len: s.len(),
            max: LINK_ID_MAX,
        });
    }
    grammar::line_safe(s)
}

/// `s` is a DNS search domain: a DNS name by RFC 1123 ([`grammar::dns_name`]) after the
/// surrounding white space the parsers trim. Underscores, spaces, `#`, `;` and every control
/// character are refused.
pub fn check_search_domain(s: &str) -> Result<(), GrammarError> {
    // The value itself, not a trimmed view of it: the renderers write it as one token, so
    // `"x\n"` or `" x"` passing here would make them refuse the whole network (found by the
    // network_render fuzz target).
    grammar::dns_name(s)
}

/// `s` is a MAC address in the model's form (`aa:bb:cc:dd:ee:ff`, lower case), as
/// [`normalize_mac`] makes it.
pub fn check_mac(s: &str) -> Result<(), GrammarError> {
    if is_model_mac(s) {
        Ok(())
    } else {
        grammar::line_safe(s)?;
        Err(GrammarError::Forbidden {
            ch: s
                .chars()
                .find(|c| !c.is_ascii_hexdigit() && *c != ':')
                .unwrap_or(' '),
            at: s
                .char_indices()
                .find(|(_, c)| !c.is_ascii_hexdigit() && *c != ':')
                .map_or(0, |(i, _)| i),
            why: "is not part of a MAC address in aa:bb:cc:dd:ee:ff form",
        })
    }
}

impl NetworkConfig {
    /// Checks every string of the model against the grammar of what it stands for (link ids,
    /// interface names, MAC addresses, member and parent references, bond options, search
    /// domains). The parsers drop every value that fails, with a warning naming its field, so
    /// a parsed config always passes; `net::validate` asserts it at the end of every parser,
    /// and the renderers check the values they write once more. Returns the first failure as
    /// (field, reason); the field names the link by index (the id itself may be the problem).
    pub fn check_grammar(&self) -> Result<(), (String, ValueError)> {
        // The field's path is formatted only for the failure it names: a parsed config always
        // passes, and is checked once per parse.
        fn at<E: Into<ValueError>>(
            f: impl FnOnce() -> String,
        ) -> impl FnOnce(E) -> (String, ValueError) {
            move |e| (f(), e.into())
        }
        let dns = |d: &Dns, f: &dyn Fn() -> String| -> Result<(), (String, ValueError)> {
            for (j, s) in d.search.iter().enumerate() {
                check_search_domain(s).map_err(at(|| format!("{}.search[{j}]", f())))?;
            }
            Ok(())
        };
        dns(&self.dns, &|| "dns".to_string())?;
        for (i, l) in self.links.iter().enumerate() {
            check_link_id(&l.id).map_err(at(|| format!("links[{i}].id")))?;
            if let Some(n) = &l.name {
                check_ifname(n).map_err(at(|| format!("links[{i}].name")))?;
            }
            if let Some(m) = &l.mac {
                check_mac(m).map_err(at(|| format!("links[{i}].mac")))?;
            }
            if let Some(g) = &l.match_name {
                check_glob(g).map_err(at(|| format!("links[{i}].match_name")))?;
            }
            if let Some(g) = &l.match_driver {
                check_glob(g).map_err(at(|| format!("links[{i}].match_driver")))?;
            }
            for (j, m) in l.kind.members().iter().enumerate() {
                check_link_id(m).map_err(at(|| format!("links[{i}].members[{j}]")))?;
            }
            match &l.kind {
                LinkKind::Vlan { parent, .. } => {
                    check_link_id(parent).map_err(at(|| format!("links[{i}].parent")))?;
                }
                LinkKind::Bond { params, .. } => {
                    if let Some(x) = &params.xmit_hash_policy {
                        check_choice(x, XMIT_HASH_POLICIES)
                            .map_err(at(|| format!("links[{i}].xmit_hash_policy")))?;
                    }
                    if let Some(x) = &params.lacp_rate {
                        check_choice(x, &["slow", "fast"])
                            .map_err(at(|| format!("links[{i}].lacp_rate")))?;
                    }
                    if let Some(x) = &params.primary {
                        check_link_id(x).map_err(at(|| format!("links[{i}].primary")))?;
                    }
                    for o in &params.options {
                        let at = at(|| format!("links[{i}].{}", o.spec.kernel));
                        match (&o.value, o.spec.kind) {
                            (BondValue::Word(w), BondKind::Enum(ws)) => {
                                check_choice(w, ws).map_err(at)?
                            }
                            (BondValue::Mac(m), BondKind::Mac) => {
                                check_mac(m).map_err(ValueError::from).map_err(at)?
                            }
                            (BondValue::Num(n), BondKind::Num(lo, hi)) if (lo..=hi).contains(n) => {
                            }
                            (BondValue::Num(n), BondKind::Millis) if *n <= i32::MAX as u32 => {}
                            (BondValue::Ips(v), BondKind::Ips)
                                if !v.is_empty() && v.len() <= BOND_ARP_TARGETS_MAX => {}
                            (BondValue::Bool(_), BondKind::Bool) => {}
                            _ => {
                                return Err(at(ValueError::NotOneOf(format!(
                                    "the values of {}",
                                    o.spec.kernel
                                ))))
                            }
                        }
                    }
                }
                _ => {}
            }
            dns(&l.l3.dns, &|| format!("links[{i}].dns"))?;
        }
        Ok(())
    }
}

/// Longest match glob accepted (interface names are at most 15 bytes and driver names short:
/// a longer glob is a hostile one).
pub const GLOB_MAX: usize = 64;

/// `s` is a match glob primer writes into every backend's file (networkd `Name=`/`Driver=`,
/// netplan `match:`) and evaluates itself: 1 to [`GLOB_MAX`] bytes of the characters of an
/// interface or driver name (ASCII letters, digits, `-`, `_`, `.`, `@`) and the shell glob's
/// `*`, `?` and `[...]` (with `!` or `^` negation and `a-z` ranges), every bracket closed.
/// Nothing else: no white space (networkd's `Name=` is a white-space separated list), no
/// quote, no `\` escape, no `/` or `:`.
pub fn check_glob(s: &str) -> Result<(), GrammarError> {
    if s.is_empty() {
        return Err(GrammarError::Empty);
    }
    if s.len() > GLOB_MAX {
        return Err(GrammarError::TooLong {
            len: s.len(),
            max: GLOB_MAX,
        });
    }
    grammar::line_safe(s)?;
    let name_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@');
    let bad = |ch: char, at: usize, why: &'static str| GrammarError::Forbidden { ch, at, why };
    let chars: Vec<(usize, char)> = s.char_indices().collect();
    let mut k = 0;
    while k < chars.len() {
        let (at, ch) = chars[k];
        match ch {
            '*' | '?' => k += 1,
            '[' => {
                // `[`, an optional `!`/`^`, one or more name characters or `-`, `]`.
                let mut j = k + 1;
                if matches!(chars.get(j), Some((_, '!' | '^'))) {
                    j += 1;
                }
                let first = j;
                while let Some((a, c)) = chars.get(j).copied() {
                    if c == ']' && j > first {
                        break;
                    }
                    if !(name_char(c) || c == '-') {
                        return Err(bad(
                            c,
                            a,
                            "is not part of a glob bracket (name characters and -)",
                        ));
                    }
                    j += 1;
                }
                if j >= chars.len() {
                    return Err(bad('[', at, "opens a glob bracket that is never closed"));
                }
                k = j + 1;
            }
            c if name_char(c) => k += 1,
            c => {
                return Err(bad(
                    c,
                    at,
                    "is not part of a match glob (name characters, *, ? and [...])",
                ))
            }
        }
    }
    Ok(())
}

/// `s` holds a glob character (`*`, `?`, `[`): a pattern, not one name.
pub fn is_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// Whether `name` matches the glob `pat` (fnmatch(3) without flags, as networkd, netplan and
/// ifupdown match; the pattern is assumed to pass [`check_glob`], an unclosed bracket matches
/// itself literally). Linear in practice and bounded in the worst case: one backtracking point
/// (the last `*`), so time is at most `pat.len() * name.len()` steps, never exponential, and
/// the caller caps both lengths.
pub fn glob_match(pat: &str, name: &str) -> bool {
    let p = pat.as_bytes();
    let n = name.as_bytes();
    let (mut pi, mut ni) = (0usize, 0usize);
    // After a `*`: where the pattern resumes and the next name position to try.
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        let step = match p.get(pi) {
            Some(b'*') => {
                star = Some((pi + 1, ni));
                pi += 1;
                continue;
            }
            Some(b'?') => Some(pi + 1),
            Some(b'[') => match class(p, pi, n[ni]) {
                Some((true, end)) => Some(end),
                Some((false, _)) => None,
                // Unclosed: a literal `[`.
                None => (n[ni] == b'[').then_some(pi + 1),
            },
            Some(c) => (*c == n[ni]).then_some(pi + 1),
            None => None,
        };
        match step {
            Some(next) => {
                pi = next;
                ni += 1;
            }
            None => match star {
                Some((sp, sn)) => {
                    pi = sp;
                    ni = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|c| *c == b'*')
}

/// A bracket expression at `p[start] == b'['`: whether `c` is in it and the index after it;
/// `None` when it is not closed.
fn class(p: &[u8], start: usize, c: u8) -> Option<(bool, usize)> {
    let mut i = start + 1;
    let negate = matches!(p.get(i), Some(b'!' | b'^'));
    if negate {
        i += 1;
    }
    let mut hit = false;
    let mut first = true;
    loop {
        let x = *p.get(i)?;
        if x == b']' && !first {
            return Some((hit != negate, i + 1));
        }
        first = false;
        if p.get(i + 1) == Some(&b'-') && p.get(i + 2).is_some_and(|y| *y != b']') {
            let y = p[i + 2];
            hit |= x <= c && c <= y;
            i += 3;
        } else {
            hit |= x == c;
            i += 1;
        }
    }
}

/// Transmit hash policies the bonding driver knows.
pub const XMIT_HASH_POLICIES: &[&str] = &[
    "layer2",
    "layer2+3",
    "layer3+4",
    "encap2+3",
    "encap3+4",
    "vlan+srcmac",
];

/// Why a value of the model does not fit: its grammar, or a closed set of keywords.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    #[error(transparent)]
    Grammar(#[from] GrammarError),
    #[error("is not one of {0}")]
    NotOneOf(String),
}

/// `s` is one of `choices` (a keyword of a closed set, such as a bond option value).
pub fn check_choice(s: &str, choices: &[&str]) -> Result<(), ValueError> {
    if choices.contains(&s) {
        return Ok(());
    }
    grammar::line_safe(s)?;
    Err(ValueError::NotOneOf(choices.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::model::bytes::MemDevice as Dev;

    /// A document held as text whose file can no longer be read (the device changed under it)
    /// is written as `null` inside a valid `instance.json`, as `value()` gives it: not an
    /// error that left the whole document a bare newline (found by review).
    #[test]
    fn an_unreadable_text_document_serialises_as_null() {
        let text = format!("{{\"links\": [], \"pad\": \"{}\"}}", "p".repeat(70_000));
        let dev = std::sync::Arc::new(Dev(std::sync::Mutex::new(text.clone().into_bytes())));
        let b = crate::model::Bytes::on_device(
            dev.clone(),
            vec![(0, text.len() as u64)],
            text.len(),
            "dev: nd".into(),
        )
        .unwrap();
        let doc = JsonDoc::new(b, serde_json::from_str(&text).unwrap());
        assert!(matches!(doc, JsonDoc::Text(_)));
        dev.0.lock().unwrap()[30] ^= 1;
        assert_eq!(doc.value().into_owned(), serde_json::Value::Null);
        #[derive(serde::Serialize)]
        struct W<'a> {
            a: u32,
            data: &'a JsonDoc,
        }
        let got = crate::state::pretty_json(&W { a: 1, data: &doc });
        let want = crate::state::pretty_json(&serde_json::json!({"a": 1, "data": null}));
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(&want)
        );
    }

    /// A large document held as text is written as the `Value` it parses to: same text from
    /// `serde_json` (compact and pretty) and from `instance.json`'s writer, with members above
    /// and below the size parsed whole, keys out of order and escaped, nested containers,
    /// numbers, strings with brackets, quotes and escapes, empty containers, white space.
    #[test]
    fn a_text_document_serialises_as_its_value() {
        let mut links = String::new();
        for i in 0..400 {
            let big = if i % 50 == 0 {
                format!(
                    ",\"blob\": [{}]",
                    vec!["[1, {\"q\": \"]}\\\"{\"}]"; 300].join(",")
                )
            } else {
                String::new()
            };
            links.push_str(&format!(
                "{} {{\"type\":\"vlan\", \"id\":\"v{i}\",\"\\u00e9t\\n\":[],\"a\":{{}}, \"n\": [-1.5e3, 0, 12345678901234567890, true, null]{big}}}\n",
                if i == 0 { "" } else { "," }
            ));
        }
        let deep = format!("{}{}", "[".repeat(60), "]".repeat(60));
        let docs = [
            format!("  {{\"services\": [], \"links\": [{links}], \"networks\" : {{ \"x\": {deep}, \"b\": \"{}\" }} }}\n", "s".repeat(5000)),
            format!("[{links}]"),
            // A repeated key (the source refuses them; a map keeps the last).
            format!("{{\"a\": 1, \"pad\": \"{}\", \"a\": [2], \"\\u0061\": 3, \"0\": 0}}", "p".repeat(5000)),
        ];
        for text in docs {
            assert!(text.len() > JsonText::WHOLE);
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            let doc = JsonDoc::Text(text.into_bytes().into());
            assert_eq!(
                serde_json::to_string(&doc).unwrap(),
                serde_json::to_string(&v).unwrap()
            );
            assert_eq!(
                serde_json::to_string_pretty(&doc).unwrap(),
                serde_json::to_string_pretty(&v).unwrap()
            );
            assert_eq!(
                crate::state::pretty_json(&doc),
                crate::state::pretty_json(&v)
            );
        }
        // Not JSON (never a `JsonDoc`'s text, unless its file can no longer be read): `null`
        // as `value()` gives when the whole text does not split, an error when only a member
        // is bad; never a panic.
        for bad in ["[1}", "{\"a\" 1}", "[1,]", "{1:2}", "[\"a"] {
            let text = format!("[{}{bad}]", "0,".repeat(3000));
            let doc = JsonDoc::Text(text.into_bytes().into());
            let out = serde_json::to_string(&doc);
            assert!(
                out.as_deref().map_or(true, |t| t == "null"),
                "{bad}: {out:?}"
            );
            let inner = format!("[{}{bad}]", "0,".repeat(3000));
            assert!(
                serde_json::to_string(&JsonText(inner.as_bytes())).is_err(),
                "{bad}"
            );
        }
    }

    /// The index answers as the scans it replaces, on random link sets with missing parents,
    /// parent cycles, duplicate ids, and members named twice: `link`, `controller_of`, each
    /// VLAN's depth as the bounded walk counted it, and "its own ancestor" as the walk from
    /// the parent found it (for the first link of an id, the only one validation lets through).
    #[test]
    fn the_link_index_answers_as_the_scans() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut rnd = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for round in 0..400 {
            let n = 1 + rnd(12) as usize;
            let ids = (n + 2) as u64;
            let mut c = NetworkConfig::default();
            for _ in 0..n {
                let id = format!("l{}", rnd(ids));
                let kind = match rnd(4) {
                    0 => LinkKind::Physical,
                    1 | 2 => LinkKind::Vlan {
                        parent: format!("l{}", rnd(ids)),
                        vlan_id: 1,
                    },
                    _ => LinkKind::Bond {
                        members: (0..rnd(3)).map(|_| format!("l{}", rnd(ids))).collect(),
                        params: BondParams::new(BondMode::BalanceRr),
                    },
                };
                c.links.push(Link::new(id, kind));
            }
            let index = LinkIndex::new(&c);
            let chains = index.vlan_chains();
            for k in 0..ids {
                let id = format!("l{k}");
                assert_eq!(index.link(&id), c.link(&id), "round {round}");
                assert_eq!(
                    index.controller_of(&id),
                    c.controller_of(&id),
                    "round {round}"
                );
            }
            for (i, l) in c.links.iter().enumerate() {
                // The walks the index replaces, as they were written.
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
                assert_eq!(chains.depth[i], d, "round {round} link {i}: {c:?}");
                let first = c.links.iter().position(|x| x.id == l.id) == Some(i);
                if let (true, LinkKind::Vlan { parent, .. }) = (first, &l.kind) {
                    let mut own = false;
                    let mut cur = parent.as_str();
                    for _ in 0..=c.links.len() {
                        match c.link(cur).map(|x| &x.kind) {
                            Some(LinkKind::Vlan { parent, .. }) => cur = parent,
                            _ => break,
                        }
                        if cur == l.id {
                            own = true;
                            break;
                        }
                    }
                    assert_eq!(chains.on_cycle[i], own, "round {round} link {i}: {c:?}");
                }
            }
        }
    }

    #[test]
    fn macs() {
        assert_eq!(
            normalize_mac("BC:76:4E:12:a4:bb").as_deref(),
            Some("bc:76:4e:12:a4:bb")
        );
        assert_eq!(
            normalize_mac("0-1-2-3-4-5").as_deref(),
            Some("00:01:02:03:04:05")
        );
        assert_eq!(normalize_mac("aa:bb:cc:dd:ee"), None);
        assert_eq!(normalize_mac("zz:bb:cc:dd:ee:ff"), None);
    }

    /// The allocation-free parser gives what the splitting one it replaced gave, and
    /// `check_mac` accepts exactly the texts `normalize_mac` leaves unchanged.
    #[test]
    fn macs_as_before() {
        fn reference(s: &str) -> Option<String> {
            let s = s.trim();
            let parts: Vec<&str> = if s.contains(':') {
                s.split(':').collect()
            } else if s.contains('-') {
                s.split('-').collect()
            } else {
                return None;
            };
            if parts.len() != 6 {
                return None;
            }
            let mut out = String::new();
            for (i, p) in parts.iter().enumerate() {
                if p.is_empty() || p.len() > 2 || !p.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return None;
                }
                if i > 0 {
                    out.push(':');
                }
                if p.len() == 1 {
                    out.push('0');
                }
                out.push_str(&p.to_ascii_lowercase());
            }
            Some(out)
        }
        let cases = [
            "",
            " ",
            ":",
            "-",
            "aa:bb:cc:dd:ee:ff",
            " AA:BB:CC:DD:EE:FF\n",
            "a:b:c:d:e:f",
            "aa-bb-cc-dd-ee-ff",
            "aa:bb-cc:dd:ee:ff:00",
            "aa:bb:cc:dd:ee:ff:",
            ":aa:bb:cc:dd:ee",
            "aa:bb:cc:dd:ee:ff:00",
            "aaa:bb:cc:dd:ee:f",
            "aa::cc:dd:ee:ff",
            "0g:00:00:00:00:00",
            "00:00:00:00:00:0é",
            "é:00:00:00:00:00",
            "+1:00:00:00:00:00",
            "aabbccddeeff",
            "AA-bb-0-1-2-3",
            "aa bb cc dd ee ff",
            "00:11:22:33:44:55\0",
            "ff:ff:ff:ff:ff:ff",
        ];
        for c in cases {
            assert_eq!(normalize_mac(c), reference(c), "{c:?}");
            assert_eq!(
                check_mac(c).is_ok(),
                reference(c).as_deref() == Some(c),
                "{c:?}"
            );
        }
    }

    #[test]
    fn bond_modes_and_names() {
        assert_eq!(BondMode::parse("802.3AD"), Some(BondMode::Lacp));
        assert_eq!(BondMode::parse("1"), Some(BondMode::ActiveBackup));
        assert_eq!(BondMode::parse("7"), None);
        assert!(valid_ifname("bond0.101"));
        assert!(!valid_ifname("a-very-long-interface"));
        assert!(!valid_ifname("../etc"));
    }

    #[test]
    fn interface_names_are_one_shell_word() {
        for good in [
            "eth0",
            "enp0s3",
            "bond0.101",
            "br-ex",
            "ens3f0np0",
            "veth_a@b",
            "a",
        ] {
            assert_eq!(check_ifname(good), Ok(()), "{good:?}");
        }
        for bad in [
            "",
            "eth0\nup rm",
            "e/x",
            "e;x",
            "e#x",
            "e x",
            "e$x",
            "e`x`",
            "e:1",
            "-e",
            ".e",
            "e\0",
            "e\u{2028}",
            "0123456789abcdef",
        ] {
            assert!(check_ifname(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn link_ids_search_domains_and_macs() {
        assert!(check_link_id("tap0a1b2c3d-e5").is_ok());
        assert!(check_link_id("a bond with spaces").is_ok());
        assert!(check_link_id("").is_err());
        assert!(check_link_id("tap\n[connection]").is_err());
        assert!(check_link_id(&"x".repeat(256)).is_err());
        assert!(check_mac("52:54:00:aa:bb:cc").is_ok());
        assert!(check_mac("52:54:00:AA:bb:cc").is_err());
        assert!(check_mac("52:54:00:aa:bb:cc\nx").is_err());
        assert!(check_choice("layer3+4", XMIT_HASH_POLICIES).is_ok());
        assert_eq!(
            check_choice("layer9", XMIT_HASH_POLICIES)
                .unwrap_err()
                .to_string(),
            format!("is not one of {}", XMIT_HASH_POLICIES.join(", "))
        );

        let mut d = Dns::default();
        assert_eq!(d.add_search(" Example.COM. "), Ok(()));
        assert_eq!(
            d.add_search("Example.COM"),
            Ok(()),
            "a duplicate is no error"
        );
        for bad in [
            "a.example\n    up touch /x",
            "a.example#x",
            "a.example;x",
            "a_b.example",
            "a b",
            "a\0b",
            "a\u{85}b",
            "a\u{2028}b",
            "",
        ] {
            assert!(d.add_search(bad).is_err(), "{bad:?}");
        }
        assert_eq!(d.search, ["Example.COM"]);
    }

    #[test]
    fn the_model_boundary_names_the_first_bad_value() {
        let mut l = Link::new("tap0", LinkKind::Physical);
        l.l3.dns.search.push("ok.example".into());
        let mut c = NetworkConfig {
            links: vec![l],
            ..Default::default()
        };
        assert_eq!(c.check_grammar(), Ok(()));
        // Built around the parsers (directly): caught here, and by the renderers.
        c.links[0].l3.dns.search.push("x\nINJECTED".into());
        let (field, _) = c.check_grammar().unwrap_err();
        assert_eq!(field, "links[0].dns.search[1]");
        c.links[0].l3.dns.search.pop();
        c.links[0].name = Some("e;reboot".into());
        assert_eq!(c.check_grammar().unwrap_err().0, "links[0].name");
        c.links[0].name = None;
        c.links.push(Link::new(
            "b",
            LinkKind::Bond {
                members: vec!["tap0".into()],
                params: BondParams {
                    lacp_rate: Some("fast\nx".into()),
                    ..BondParams::new(BondMode::Lacp)
                },
            },
        ));
        assert_eq!(c.check_grammar().unwrap_err().0, "links[1].lacp_rate");
        c.dns.search.push("#".into());
        assert_eq!(c.check_grammar().unwrap_err().0, "dns.search[0]");
    }

    #[test]
    fn bond_options_are_typed_and_checked() {
        let spec = bond_option("num_grat_arp").unwrap();
        let n = |v: serde_json::Value| spec.parse(&v, |_| None);
        assert_eq!(n(serde_json::json!(3)), Ok(BondValue::Num(3)));
        assert_eq!(n(serde_json::json!("3")), Ok(BondValue::Num(3)));
        assert!(n(serde_json::json!(256)).is_err());
        assert!(n(serde_json::json!("3\nx")).is_err());
        let sel = bond_option("ad_select").unwrap();
        assert_eq!(
            sel.parse(&serde_json::json!(2), |_| None),
            Ok(BondValue::Word("count"))
        );
        assert!(sel.parse(&serde_json::json!("fastest"), |_| None).is_err());
        // A model built around the parsers: out of range or of the wrong type is refused.
        let mut p = BondParams::new(BondMode::ActiveBackup);
        p.set_option(spec, BondValue::Num(1000));
        let c = NetworkConfig {
            links: vec![Link::new(
                "b",
                LinkKind::Bond {
                    members: vec![],
                    params: p.clone(),
                },
            )],
            ..Default::default()
        };
        assert_eq!(c.check_grammar().unwrap_err().0, "links[0].num_grat_arp");
        p.set_option(spec, BondValue::Word("x"));
        let mut c2 = c.clone();
        c2.links[0].kind = LinkKind::Bond {
            members: vec![],
            params: p,
        };
        assert!(c2.check_grammar().is_err());
    }

    #[test]
    fn a_search_domain_is_checked_as_written() {
        assert!(check_search_domain("example.com").is_ok());
        for bad in ["x\n", " x", "x ", "x\ty", ""] {
            assert!(check_search_domain(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn globs_match_as_fnmatch_and_stay_linear() {
        for (p, n, want) in [
            ("eth*", "eth0", true),
            ("eth*", "eth", true),
            ("eth*", "ens3", false),
            ("en?3", "ens3", true),
            ("en?3", "ens33", false),
            ("ens[0-4]", "ens3", true),
            ("ens[!0-4]", "ens3", false),
            ("ens[^0-4]", "ens5", true),
            ("*", "", true),
            ("", "", true),
            ("", "a", false),
            ("virtio*", "virtio_net", true),
            ("*_net", "virtio_net", true),
            ("a*b*c", "aXbYc", true),
            ("a*b*c", "aXbYcZ", false),
            ("[a", "[a", true),
        ] {
            assert_eq!(glob_match(p, n), want, "{p:?} {n:?}");
        }
        // A hostile glob against a long name: one backtracking point, so at most
        // len(p) * len(n) steps, not exponential.
        let p = format!("{}b", "*a".repeat(31));
        assert!(p.len() <= GLOB_MAX && check_glob(&p).is_ok());
        let n = "a".repeat(4096);
        let t = std::time::Instant::now();
        for _ in 0..100 {
            assert!(!glob_match(&p, &n));
        }
        assert!(
            t.elapsed() < std::time::Duration::from_secs(2),
            "{:?}",
            t.elapsed()
        );
    }

    #[test]
    fn globs_fit_the_grammar_of_every_file() {
        for good in [
            "eth*",
            "en?[0-9]",
            "ens[!3]",
            "virtio_net",
            "mlx5_*",
            "e@x.1-2",
        ] {
            assert_eq!(check_glob(good), Ok(()), "{good:?}");
        }
        for bad in [
            "",
            "eth* ens*",
            "eth*\nName=x",
            "e\"x",
            "e'x",
            "e;x",
            "e#x",
            "e\\x",
            "e/x",
            "e:x",
            "[abc",
            "[]",
            "[!]",
            "e]",
            "e$x",
            "e{a,b}",
            "e\u{2028}",
        ] {
            assert!(check_glob(bad).is_err(), "{bad:?}");
        }
        assert!(check_glob(&"*".repeat(GLOB_MAX + 1)).is_err());
        assert!(is_glob("eth*") && !is_glob("eth0"));
    }
}
