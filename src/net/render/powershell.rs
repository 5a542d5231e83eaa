//! PowerShell renderer (Windows): the network model into one script, [`PATH`], that primer's
//! Windows service runs (cloudbase-init's NetworkConfigPlugin semantics as one generated
//! script). Pure: model in, script text out; no OS call, no clock, no lookup of adapters (the
//! script finds them itself, by MAC address, when it runs).
//!
//! What the script does, per link in dependency order (physical, teams, VLANs): finds the
//! hardware adapter by MAC (Windows shows `AA-BB-CC-DD-EE-FF`), renames it to the name the
//! drive asks for, creates LBFO teams for bonds (`New-NetLbfoTeam`) and VLANs (`Set-NetAdapter
//! -VlanID` on a physical adapter, `Add-NetLbfoTeamNic -VlanID` on a team), then sets the layer
//! 3 configuration of every interface: DHCP on/off, static IPv4/IPv6 addresses with their
//! prefix, routes (default gateway included) with their metric, DNS servers and the connection
//! suffix, MTU, and the global DNS suffix search list. It is idempotent (test-and-set; the
//! addresses and routes it manages, `Manual` / `NetMgmt` ones, are made equal to the model's,
//! so a second run changes nothing) and stops at the first failure with a message naming the
//! link and its adapter, exit code 1. What Windows cannot express (bridges, VLANs on VLANs,
//! more than one VLAN on a physical adapter, most bonding options, the `broadcast` mode) is a
//! warning, never silence.
//!
//! Hostile input: every drive string that lands in the script is a PowerShell single-quoted
//! literal written by [`literal`] (`'` doubled; control characters, `$`, backtick and every
//! typographic quote refused), and the values the model boundary already narrows (interface
//! names: `[A-Za-z0-9._@-]`; search domains: DNS names; MACs: reformatted hex) are the only
//! ones that can reach it. Link ids (any one-line text) never do: they appear as
//! `render::safe_id`. `check_lines` then checks every line with [`line_ok`].

use std::fmt::Write;
use std::net::IpAddr;

use super::{bond_option_warning, lf, link_dns, member_l3_warning, ordered, safe_id};
use super::{RenderError, Rendered, HEADER};
use crate::model::grammar::{self, Esc, GrammarError};
use crate::model::network::{
    check_ifname, check_mac, BondMode, Ipv6Auto, Link, LinkKind, NetworkConfig, L3,
};
use crate::net::naming::Names;

/// The script, relative to the target root (`%ProgramData%\primer\network.ps1`: readable and
/// writable by SYSTEM and Administrators only, like the rest of primer's state there).
pub const PATH: &str = "ProgramData/primer/network.ps1";
/// Directory of [`PATH`] (the backend's `Owned::dir`).
pub const DIR: &str = "ProgramData/primer";

/// Longest string written as one literal (Windows adapter names are at most 256 characters,
/// DNS names 253; a longer value is a hostile one).
pub const LITERAL_MAX: usize = 255;

/// Characters PowerShell reads as quotation marks besides `'`: U+2018, U+2019, U+201A and
/// U+201B end a single-quoted string exactly like `'` does, and U+201C to U+201E are double
/// quotes (PowerShell language specification §2.3.5.2, `single-quote-character` and
/// `double-quote-character`; about_Quoting_Rules: "PowerShell treats smart quotation marks
/// [...] as normal quotation marks for strings", MicrosoftDocs/PowerShell-Docs#11405; the
/// grammar of PowerShell/EditorSyntax#173 ends a single-quoted string on `['\x{2018}-\x{201B}]`).
/// A literal that doubled only `'` could be closed by one of them.
pub const TYPOGRAPHIC_QUOTES: &[char] = &[
    '\u{2018}', '\u{2019}', '\u{201A}', '\u{201B}', '\u{201C}', '\u{201D}', '\u{201E}',
];

/// Characters refused inside a literal besides controls and [`TYPOGRAPHIC_QUOTES`]: none of
/// them is special in a single-quoted string, but no legitimate value holds one, and refusing
/// them keeps a literal inert even if it were ever pasted into a double-quoted string
/// (`$(...)` and backtick escapes expand there).
const NOT_IN_LITERAL: &[char] = &['$', '`', '"'];

/// `v` as a PowerShell single-quoted literal (`'...'`, `'` doubled), or why it cannot be one:
/// empty, longer than [`LITERAL_MAX`], a control character or line separator (a newline would
/// end the statement), `$`, backtick, `"` or a typographic quote.
pub fn literal(v: &str) -> Result<String, GrammarError> {
    if v.is_empty() {
        return Err(GrammarError::Empty);
    }
    if v.len() > LITERAL_MAX {
        return Err(GrammarError::TooLong {
            len: v.len(),
            max: LITERAL_MAX,
        });
    }
    grammar::line_safe(v)?;
    // ASCII only: Windows PowerShell 5.1 reads a script without a byte order mark in the ANSI
    // code page, where the UTF-8 bytes of an innocent character decode to others — `đ` (C4 91)
    // becomes `Ä‘` under cp1252, and U+2018 ends the literal. No value primer writes here
    // (interface names, DNS names, MACs, addresses) needs more than ASCII.
    if let Some((at, ch)) = v.char_indices().find(|(_, c)| {
        !c.is_ascii() || NOT_IN_LITERAL.contains(c) || TYPOGRAPHIC_QUOTES.contains(c)
    }) {
        return Err(GrammarError::Forbidden {
            ch,
            at,
            why: "cannot be part of a PowerShell literal primer writes (not ASCII, expansion character or quotation mark)",
        });
    }
    Ok(format!("'{}'", v.replace('\'', "''")))
}

/// Whether `line` is a line of the PowerShell primer writes: every `'` opens a literal that
/// closes on the same line (`''` inside is one quote) and holds nothing [`literal`] refuses;
/// outside literals no `"`, backtick, typographic quote, block comment (`<#`) or here-string
/// opener (`@'`), so no literal boundary can be other than where primer put it. A `#` at the
/// start of a word starts a comment that runs to the end of the line; elsewhere it is refused.
pub fn line_ok(line: &str) -> bool {
    // ASCII only, as in `literal` (the script is read in the ANSI code page).
    if !line.is_ascii() {
        return false;
    }
    let mut chars = line.chars().peekable();
    let mut prev = ' ';
    while let Some(c) = chars.next() {
        if c == '\'' {
            if prev == '@' {
                return false;
            }
            // Inside a literal up to the closing quote.
            loop {
                match chars.next() {
                    None => return false,
                    Some('\'') if chars.peek() == Some(&'\'') => {
                        chars.next();
                    }
                    Some('\'') => break,
                    Some(x)
                        if grammar::is_line_breaking(x)
                            || NOT_IN_LITERAL.contains(&x)
                            || TYPOGRAPHIC_QUOTES.contains(&x) =>
                    {
                        return false
                    }
                    Some(_) => {}
                }
            }
            prev = '\'';
            continue;
        }
        if c == '"' || c == '`' || TYPOGRAPHIC_QUOTES.contains(&c) || grammar::is_line_breaking(c) {
            return false;
        }
        if c == '#' {
            // A comment runs to the end of the line, but only where a token starts (`a#b` is
            // one word to PowerShell); `<#` would open a block comment spanning lines.
            return prev == ' ' && !chars.any(grammar::is_line_breaking);
        }
        prev = c;
    }
    true
}

/// The helpers every script starts with. No drive string in here; no double-quoted string
/// either (messages use `-f` with single-quoted formats), so [`line_ok`] holds for it.
const PRELUDE: &str = r#"# Windows network configuration from the config drive, rendered by primer (backend powershell).
# Run by the primer service: powershell.exe -NoProfile -NonInteractive -ExecutionPolicy Bypass -File network.ps1
# Idempotent: a second run changes nothing. Exit code 0: done; 1: a step failed (stderr names the link).
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
Set-StrictMode -Version 2.0

# Runs one link's steps; the first error ends the script with exit code 1 and a message
# naming the link and its adapter.
function Invoke-PrimerStep([string]$What, [scriptblock]$Body) {
    try {
        & $Body
    } catch {
        [Console]::Error.WriteLine(('primer network: {0}: {1}' -f $What, $_.Exception.Message))
        exit 1
    }
}

# The one hardware adapter with this MAC address. Team NICs and VLAN NICs share a member's
# MAC, so only hardware interfaces count.
function Get-PrimerAdapter([string]$Mac) {
    $a = @(Get-NetAdapter | Where-Object { $_.MacAddress -eq $Mac -and $_.HardwareInterface })
    if ($a.Count -ne 1) {
        throw ('{0} hardware network adapters with MAC address {1}, expected 1' -f $a.Count, $Mac)
    }
    $a[0]
}

# The adapter named $Name, waiting up to 60 s (a team NIC appears after New-NetLbfoTeam
# returns). Names are interface names without wildcard characters.
function Wait-PrimerAdapter([string]$Name) {
    for ($n = 0; $n -lt 60; $n++) {
        $a = Get-NetAdapter -Name $Name -ErrorAction SilentlyContinue
        if ($a) { return $a }
        Start-Sleep -Seconds 1
    }
    throw ('no network adapter named {0} after 60 s' -f $Name)
}

# Renames the adapter unless it has the name already; returns it.
function Rename-PrimerAdapter($Adapter, [string]$Name) {
    if ($Adapter.Name -ne $Name) {
        Rename-NetAdapter -Name $Adapter.Name -NewName $Name -Confirm:$false
    }
    Get-NetAdapter -InterfaceIndex $Adapter.ifIndex
}

# Tags a physical adapter with a VLAN id (the driver must support it); the adapter restarts.
function Set-PrimerVlan($Adapter, [int]$VlanId) {
    if ($Adapter.VlanID -ne $VlanId) {
        Set-NetAdapter -Name $Adapter.Name -VlanID $VlanId -Confirm:$false
    }
    Get-NetAdapter -InterfaceIndex $Adapter.ifIndex
}

# An LBFO team of the adapters with these MACs: created, or brought to this mode, algorithm
# and membership. $Standby: the MAC of the one standby member ('' for none).
function Set-PrimerTeam([string]$Name, [string[]]$Members, [string]$Mode, [string]$Algorithm, [string]$LacpTimer, [string]$Standby) {
    $names = @($Members | ForEach-Object { (Get-PrimerAdapter $_).Name })
    $team = Get-NetLbfoTeam -Name $Name -ErrorAction SilentlyContinue
    if (-not $team) {
        New-NetLbfoTeam -Name $Name -TeamMembers $names -TeamingMode $Mode -LoadBalancingAlgorithm $Algorithm -Confirm:$false | Out-Null
    } elseif ($team.TeamingMode -ne $Mode -or $team.LoadBalancingAlgorithm -ne $Algorithm) {
        Set-NetLbfoTeam -Name $Name -TeamingMode $Mode -LoadBalancingAlgorithm $Algorithm -Confirm:$false
    }
    foreach ($m in $names) {
        if (-not (Get-NetLbfoTeamMember -Team $Name -Name $m -ErrorAction SilentlyContinue)) {
            Add-NetLbfoTeamMember -Team $Name -Name $m -Confirm:$false
        }
    }
    if ($LacpTimer -ne '' -and (Get-NetLbfoTeam -Name $Name).LacpTimer -ne $LacpTimer) {
        Set-NetLbfoTeam -Name $Name -LacpTimer $LacpTimer -Confirm:$false
    }
    if ($Standby -ne '') {
        $s = (Get-PrimerAdapter $Standby).Name
        if ((Get-NetLbfoTeamMember -Team $Name -Name $s).AdministrativeMode -ne 'Standby') {
            Set-NetLbfoTeamMember -Name $s -AdministrativeMode Standby -Confirm:$false
        }
    }
    Wait-PrimerAdapter $Name
}

# A VLAN interface on a team: created unless the team has a NIC for this VLAN id.
function Add-PrimerTeamVlan([string]$Team, [int]$VlanId, [string]$Name) {
    if (-not (Get-NetLbfoTeamNic -Team $Team -ErrorAction SilentlyContinue | Where-Object { $_.VlanID -eq $VlanId })) {
        Add-NetLbfoTeamNic -Team $Team -VlanID $VlanId -Name $Name -Confirm:$false | Out-Null
    }
    Wait-PrimerAdapter $Name
}

# One address family of one interface: DHCP (and, for IPv6, router discovery) on or off,
# exactly these static addresses (other Manual ones removed) and exactly these routes (other
# NetMgmt ones removed), the MTU when not 0. A family the adapter has no binding for is left
# alone when nothing is wanted of it.
function Set-PrimerFamily([int]$Index, [string]$Family, [bool]$Dhcp, [bool]$RouterDiscovery, [string[]]$Addresses, [object[]]$Routes, [int]$Mtu) {
    $ip = Get-NetIPInterface -InterfaceIndex $Index -AddressFamily $Family -ErrorAction SilentlyContinue
    if (-not $ip) {
        if ($Dhcp -or $Addresses.Count -gt 0 -or $Routes.Count -gt 0) {
            throw ('{0} is not enabled on the adapter' -f $Family)
        }
        return
    }
    $want = if ($Dhcp) { 'Enabled' } else { 'Disabled' }
    if ($ip.Dhcp -ne $want) {
        Set-NetIPInterface -InterfaceIndex $Index -AddressFamily $Family -Dhcp $want
    }
    if ($Family -eq 'IPv6') {
        $ra = if ($RouterDiscovery) { 'Enabled' } else { 'Disabled' }
        if ($ip.RouterDiscovery -ne $ra) {
            Set-NetIPInterface -InterfaceIndex $Index -AddressFamily $Family -RouterDiscovery $ra
        }
    }
    if ($Mtu -ne 0 -and $ip.NlMtu -ne $Mtu) {
        Set-NetIPInterface -InterfaceIndex $Index -AddressFamily $Family -NlMtuBytes $Mtu
    }
    $have = @(Get-NetIPAddress -InterfaceIndex $Index -AddressFamily $Family -PrefixOrigin Manual -ErrorAction SilentlyContinue)
    foreach ($h in $have) {
        if ($Addresses -notcontains ('{0}/{1}' -f $h.IPAddress, $h.PrefixLength)) {
            Remove-NetIPAddress -InterfaceIndex $Index -IPAddress $h.IPAddress -Confirm:$false
        }
    }
    foreach ($w in $Addresses) {
        $addr, $len = $w.Split('/')
        if (-not ($have | Where-Object { $_.IPAddress -eq $addr -and $_.PrefixLength -eq [int]$len })) {
            New-NetIPAddress -InterfaceIndex $Index -AddressFamily $Family -IPAddress $addr -PrefixLength ([int]$len) | Out-Null
        }
    }
    $have = @(Get-NetRoute -InterfaceIndex $Index -AddressFamily $Family -Protocol NetMgmt -ErrorAction SilentlyContinue)
    foreach ($h in $have) {
        if (-not ($Routes | Where-Object { $_.To -eq $h.DestinationPrefix -and $_.Via -eq $h.NextHop -and $_.Metric -eq $h.RouteMetric })) {
            Remove-NetRoute -InterfaceIndex $Index -DestinationPrefix $h.DestinationPrefix -NextHop $h.NextHop -Confirm:$false
        }
    }
    foreach ($r in $Routes) {
        if (-not ($have | Where-Object { $_.DestinationPrefix -eq $r.To -and $_.NextHop -eq $r.Via -and $_.RouteMetric -eq $r.Metric })) {
            New-NetRoute -InterfaceIndex $Index -AddressFamily $Family -DestinationPrefix $r.To -NextHop $r.Via -RouteMetric $r.Metric | Out-Null
        }
    }
}

# DNS servers of one interface (none: reset to what DHCP gives) and its connection suffix
# ('' clears it).
function Set-PrimerDns([int]$Index, [string[]]$Servers, [string]$Suffix) {
    if ($Servers.Count -gt 0) {
        Set-DnsClientServerAddress -InterfaceIndex $Index -ServerAddresses $Servers
    } else {
        Set-DnsClientServerAddress -InterfaceIndex $Index -ResetServerAddresses
    }
    if ((Get-DnsClient -InterfaceIndex $Index).ConnectionSpecificSuffix -ne $Suffix) {
        Set-DnsClient -InterfaceIndex $Index -ConnectionSpecificSuffix $Suffix
    }
}
"#;

/// The metric Windows gives a route added without one (`New-NetRoute`'s default): written
/// explicitly so the script can compare what is there with what is wanted.
pub const DEFAULT_ROUTE_METRIC: u32 = 256;

/// The global DNS suffix search list: every link's domains, then the machine-wide ones, each
/// once in first-seen order. With a set of what it holds: the list searched per domain was
/// quadratic in domains (thousands of links each with its own; issue 15).
#[derive(Default)]
struct Search {
    list: Vec<String>,
    seen: std::collections::HashSet<String>,
}

impl Search {
    fn add(&mut self, d: &str) {
        let d = d.to_string();
        if !self.seen.contains(&d) {
            self.seen.insert(d.clone());
            self.list.push(d);
        }
    }
}

/// The smallest IPv6 MTU (RFC 8200 §5): Windows refuses a smaller `NlMtuBytes` for IPv6.
const IPV6_MIN_MTU: u32 = 1280;

/// A value check bound to the script's path: every drive string goes through
/// [`PsCheck::lit`].
struct PsCheck;

impl PsCheck {
    /// `v` as a literal, or an error naming the script and `field`.
    fn lit(&self, field: &str, v: &str) -> Result<String, RenderError> {
        literal(v).map_err(|e| self.err(field, v, e))
    }
    /// An interface or team name: the model's interface-name grammar, then a literal (a name
    /// handed in from outside the model is checked like the drive's).
    fn name(&self, field: &str, v: &str) -> Result<String, RenderError> {
        check_ifname(v).map_err(|e| self.err(field, v, e))?;
        self.lit(field, v)
    }
    /// A DNS suffix: a DNS name, then a literal.
    fn domain(&self, field: &str, v: &str) -> Result<String, RenderError> {
        grammar::dns_name(v).map_err(|e| self.err(field, v, e))?;
        self.lit(field, v)
    }
    /// A MAC of the model (checked as one) in Windows' form, as a literal.
    fn mac(&self, field: &str, v: &str) -> Result<String, RenderError> {
        check_mac(v).map_err(|e| self.err(field, v, e))?;
        self.lit(field, &windows_mac(v))
    }
    fn err(&self, field: &str, v: &str, e: GrammarError) -> RenderError {
        RenderError {
            file: PATH.to_string(),
            field: field.to_string(),
            message: format!("{} {e}; nothing rendered", Esc(v)),
        }
    }
}

/// A MAC of the model (`aa:bb:cc:dd:ee:ff`) as Windows shows it (`AA-BB-CC-DD-EE-FF`).
pub fn windows_mac(mac: &str) -> String {
    mac.replace(':', "-").to_ascii_uppercase()
}

/// LBFO's teaming mode and load-balancing algorithm for a bond, or why there is none.
/// Mapping: 802.3ad -> `Lacp`; balance-xor -> `Static`; balance-rr -> `Static` (LBFO has no
/// round robin: warned); active-backup, balance-tlb, balance-alb -> `SwitchIndependent`;
/// broadcast: none. The algorithm follows `xmit_hash_policy` (layer2 -> `MacAddresses`,
/// layer2+3 / encap2+3 -> `IPAddresses`, layer3+4 / encap3+4 -> `TransportPorts`), else
/// `Dynamic` (Windows' default and best choice since Server 2012 R2).
fn team_mode(mode: BondMode, xmit: Option<&str>) -> Option<(&'static str, &'static str)> {
    let m = match mode {
        BondMode::Lacp => "Lacp",
        BondMode::BalanceXor | BondMode::BalanceRr => "Static",
        BondMode::ActiveBackup | BondMode::BalanceTlb | BondMode::BalanceAlb => "SwitchIndependent",
        BondMode::Broadcast => return None,
    };
    let a = match xmit {
        Some("layer2") => "MacAddresses",
        Some("layer2+3" | "encap2+3") => "IPAddresses",
        Some("layer3+4" | "encap3+4") => "TransportPorts",
        _ => "Dynamic",
    };
    Some((m, a))
}

/// What a link becomes on Windows: the adapter the script finds, and whether the link's layer
/// 3 configuration is applied to it.
enum Plan<'c> {
    /// A physical adapter by MAC (the model's form).
    Physical { mac: String },
    /// An LBFO team of these member links.
    Team { members: Vec<&'c Link> },
    /// A VLAN tag on the physical parent's adapter.
    PhysicalVlan { mac: String, vlan_id: u16 },
    /// A team NIC for the VLAN on the parent team.
    TeamVlan { team: &'c Link, vlan_id: u16 },
}

pub fn render_powershell(c: &NetworkConfig, names: &Names) -> Result<Rendered, RenderError> {
    let c = &super::Net::new(c);
    let mut out = Rendered::default();
    let ck = PsCheck;
    let mut s = String::new();
    let _ = writeln!(s, "{HEADER}");
    s.push_str(PRELUDE);

    // Which links Windows can express, decided before writing anything: a VLAN needs a
    // renderable parent, a team renderable members.
    let mut plans: Vec<Option<Plan<'_>>> = Vec::with_capacity(c.links.len());
    for l in &c.links {
        plans.push(plan_link(c, l, &mut out.warnings));
    }
    // A team whose member is not a plain adapter is dropped (and so are VLANs on it).
    for (i, l) in c.links.iter().enumerate() {
        if let Some(Plan::Team { members }) = &plans[i] {
            if let Some(m) = members
                .iter()
                .find(|m| m.mac.is_none() || !matches!(m.kind, LinkKind::Physical))
            {
                out.warnings.push(format!(
                    "bond {:?}: member {:?} is not a network adapter with a MAC address; LBFO teams only adapters matched by MAC, team not rendered",
                    l.id, m.id
                ));
                plans[i] = None;
            }
        }
    }
    // One VLAN per physical adapter (without Hyper-V, Windows tags the adapter itself).
    // A set: a list searched per VLAN was quadratic in tagged adapters.
    let mut tagged: std::collections::HashSet<&str> = std::collections::HashSet::new();
    for (i, l) in c.links.iter().enumerate() {
        let LinkKind::Vlan { parent, .. } = &l.kind else {
            continue;
        };
        let Some(pi) = c.position(parent) else {
            plans[i] = None;
            continue;
        };
        let ok = match (&plans[pi], &plans[i]) {
            (Some(Plan::Physical { .. }), Some(Plan::PhysicalVlan { .. })) => {
                if tagged.contains(&parent.as_str()) {
                    out.warnings.push(format!(
                        "vlan {:?}: its physical parent {parent:?} already carries a VLAN; Windows tags an adapter with one VLAN id (more need Hyper-V or a team), not rendered",
                        l.id
                    ));
                    false
                } else {
                    tagged.insert(parent);
                    true
                }
            }
            (Some(Plan::Team { .. }), Some(Plan::TeamVlan { .. })) => true,
            (None, Some(_)) => {
                out.warnings.push(format!(
                    "vlan {:?}: its parent {parent:?} is not rendered; not rendered",
                    l.id
                ));
                false
            }
            _ => false,
        };
        if !ok {
            plans[i] = None;
        }
    }
    if plans.iter().any(|p| matches!(p, Some(Plan::Team { .. }))) {
        out.warnings.push(
            "bonds become LBFO teams (New-NetLbfoTeam): Windows Server only, and unsupported on a Hyper-V vSwitch since Windows Server 2022 (Switch Embedded Teaming replaces it there)"
                .into(),
        );
    }

    let vlans = super::vlans_by_parent(c);
    let mut search = Search::default();
    for (i, l) in ordered(c) {
        let Some(plan) = &plans[i] else { continue };
        let label = match plan {
            Plan::Physical { mac } => {
                format!("link {} (MAC {})", safe_id(&l.id), windows_mac(mac))
            }
            Plan::PhysicalVlan { mac, vlan_id } => format!(
                "link {} (VLAN {vlan_id} on MAC {})",
                safe_id(&l.id),
                windows_mac(mac)
            ),
            Plan::Team { .. } => format!("link {} (LBFO team)", safe_id(&l.id)),
            Plan::TeamVlan { team, vlan_id } => format!(
                "link {} (VLAN {vlan_id} on team {})",
                safe_id(&l.id),
                safe_id(&team.id)
            ),
        };
        let mut b = String::new();
        // Whether this link's own layer 3 is applied here.
        let mut l3 = c.controller_of(&l.id).is_none();
        match plan {
            Plan::Physical { mac } => {
                let _ = writeln!(
                    b,
                    "    $a = Get-PrimerAdapter {}",
                    ck.mac(&lf(i, "mac"), mac)?
                );
                if let Some(n) = &l.name {
                    let _ = writeln!(
                        b,
                        "    $a = Rename-PrimerAdapter $a {}",
                        ck.name(&lf(i, "name"), n)?
                    );
                }
                if let Some(w) = member_l3_warning(c, l) {
                    out.warnings.push(w);
                }
                if !l3 && l.mtu.is_some() {
                    out.warnings.push(format!(
                        "link {:?}: member of a team; Windows takes the MTU of the team interface, its own is ignored",
                        l.id
                    ));
                }
                // A physical adapter that carries a VLAN is configured by the VLAN's block.
                let from = vlans.partition_point(|&(p, _)| p < l.id.as_str());
                let vlan = vlans[from..]
                    .iter()
                    .take_while(|&&(p, _)| p == l.id)
                    .find(|&&(_, j)| plans[j].is_some())
                    .map(|&(_, j)| &c.links[j]);
                if let Some(v) = vlan {
                    if l3 && l.l3.is_configured() {
                        out.warnings.push(format!(
                            "link {:?}: carries VLAN {:?}, which Windows sets on the adapter itself; the link's own (untagged) addresses are ignored",
                            l.id, v.id
                        ));
                    }
                    l3 = false;
                }
            }
            Plan::Team { members } => {
                let LinkKind::Bond { params, .. } = &l.kind else {
                    continue;
                };
                let Some((mode, algo)) = team_mode(params.mode, params.xmit_hash_policy.as_deref())
                else {
                    continue;
                };
                let name = names.name(&l.id).unwrap_or(&l.id);
                let macs: Vec<String> = members
                    .iter()
                    .filter_map(|m| m.mac.as_deref())
                    .map(|m| ck.mac(&lf(i, "members"), m))
                    .collect::<Result<_, _>>()?;
                let timer = match (params.mode, params.lacp_rate.as_deref()) {
                    (BondMode::Lacp, Some("fast")) => "Fast",
                    (BondMode::Lacp, Some("slow")) => "Slow",
                    _ => "",
                };
                let standby = standby(l, members, params, &mut out.warnings);
                let standby = match standby {
                    Some(m) => ck.mac(&lf(i, "primary"), m)?,
                    None => "''".to_string(),
                };
                let _ = writeln!(
                    b,
                    "    $a = Set-PrimerTeam -Name {} -Members @({}) -Mode {mode} -Algorithm {algo} -LacpTimer '{timer}' -Standby {standby}",
                    ck.name(&lf(i, "name"), name)?,
                    macs.join(", ")
                );
            }
            Plan::PhysicalVlan { mac, vlan_id } => {
                if l.name.is_some() {
                    out.warnings.push(format!(
                        "vlan {:?}: Windows tags the parent adapter itself; the VLAN's name is not given to it",
                        l.id
                    ));
                }
                let _ = writeln!(
                    b,
                    "    $a = Get-PrimerAdapter {}",
                    ck.mac(&lf(i, "parent"), mac)?
                );
                let _ = writeln!(b, "    $a = Set-PrimerVlan $a {vlan_id}");
            }
            Plan::TeamVlan { team, vlan_id } => {
                let tn = names.name(&team.id).unwrap_or(&team.id);
                let vn = names.name(&l.id).unwrap_or(&l.id);
                let _ = writeln!(
                    b,
                    "    $a = Add-PrimerTeamVlan -Team {} -VlanId {vlan_id} -Name {}",
                    ck.name(&lf(i, "parent"), tn)?,
                    ck.name(&lf(i, "name"), vn)?
                );
            }
        }
        // After the body: a bad MAC is reported by its own field first.
        let head = format!("\nInvoke-PrimerStep {} {{\n", ck.lit(&lf(i, "id"), &label)?);
        if l3 {
            write_l3(&mut b, &ck, c, i, l, &mut out.warnings, &mut search)?;
        }
        s.push_str(&head);
        s.push_str(&b);
        s.push_str("}\n");
    }
    for d in &c.dns.search {
        search.add(d);
    }
    if !search.list.is_empty() {
        let list = search
            .list
            .iter()
            .enumerate()
            .map(|(j, d)| ck.domain(&format!("dns.search[{j}]"), d))
            .collect::<Result<Vec<_>, _>>()?;
        let _ = writeln!(
            s,
            "\nInvoke-PrimerStep 'DNS suffix search list' {{\n    Set-DnsClientGlobalSetting -SuffixSearchList @({})\n}}",
            list.join(", ")
        );
    }
    s.push_str("\nexit 0\n");
    // Run by LocalSystem: nobody else may write it.
    out.push(PATH.to_string(), &s, 0o600);
    out.done()
}

/// Decides what one link becomes, warning (naming the link) when Windows cannot express it.
fn plan_link<'c>(c: &super::Net<'c>, l: &'c Link, warnings: &mut Vec<String>) -> Option<Plan<'c>> {
    match &l.kind {
        LinkKind::Physical => {
            let Some(mac) = &l.mac else {
                warnings.push(format!(
                    "link {:?}: no MAC address; the Windows script finds adapters by MAC only (names and drivers differ there), not rendered",
                    l.id
                ));
                return None;
            };
            if l.has_match_rules() {
                warnings.push(format!(
                    "link {:?}: matched by MAC only on Windows; its name or driver match is not checked",
                    l.id
                ));
            }
            Some(Plan::Physical { mac: mac.clone() })
        }
        LinkKind::Bond { members, params } => {
            if team_mode(params.mode, None).is_none() {
                warnings.push(format!(
                    "bond {:?}: mode {} has no LBFO teaming mode; team not rendered",
                    l.id, params.mode
                ));
                return None;
            }
            if params.mode == BondMode::BalanceRr {
                warnings.push(format!(
                    "bond {:?}: LBFO has no round robin; balance-rr becomes a Static team",
                    l.id
                ));
            }
            if params.miimon.is_some() {
                warnings.push(bond_option_warning(l, "miimon", "Windows LBFO"));
            }
            if params.lacp_rate.is_some() && params.mode != BondMode::Lacp {
                warnings.push(bond_option_warning(l, "lacp_rate", "Windows LBFO"));
            }
            for o in &params.options {
                warnings.push(bond_option_warning(l, o.spec.kernel, "Windows LBFO"));
            }
            if l.mac.is_some() {
                warnings.push(format!(
                    "bond {:?}: an LBFO team takes its MAC from a member; the bond's own MAC is ignored",
                    l.id
                ));
            }
            let members = members.iter().filter_map(|m| c.link(m)).collect();
            Some(Plan::Team { members })
        }
        LinkKind::Vlan { parent, vlan_id } => {
            let p = c.link(parent)?;
            match &p.kind {
                LinkKind::Physical => match &p.mac {
                    Some(mac) => Some(Plan::PhysicalVlan {
                        mac: mac.clone(),
                        vlan_id: *vlan_id,
                    }),
                    None => {
                        warnings.push(format!(
                            "vlan {:?}: its parent {parent:?} has no MAC address, so the Windows script cannot find its adapter; not rendered",
                            l.id
                        ));
                        None
                    }
                },
                LinkKind::Bond { .. } => Some(Plan::TeamVlan {
                    team: p,
                    vlan_id: *vlan_id,
                }),
                _ => {
                    warnings.push(format!(
                        "vlan {:?}: on a {} ({parent:?}); Windows has VLANs only on an adapter or a team, not rendered",
                        l.id,
                        p.kind.name()
                    ));
                    None
                }
            }
        }
        LinkKind::Bridge { .. } => {
            warnings.push(format!(
                "bridge {:?}: Windows has no bridge primer can create (a Hyper-V vSwitch is the host's business); the bridge and its addresses are not rendered, its members left as they are",
                l.id
            ));
            None
        }
    }
}

/// The standby member of an active-backup team: LBFO allows one; the members other than the
/// primary (or the first) when there are exactly two, else none (warned).
fn standby<'c>(
    l: &Link,
    members: &[&'c Link],
    params: &crate::model::network::BondParams,
    warnings: &mut Vec<String>,
) -> Option<&'c str> {
    if params.mode != BondMode::ActiveBackup {
        if params.primary.is_some() {
            warnings.push(bond_option_warning(l, "primary", "Windows LBFO"));
        }
        return None;
    }
    if members.len() != 2 {
        warnings.push(format!(
            "bond {:?}: active-backup with {} members; LBFO has at most one standby adapter, so all members stay active",
            l.id,
            members.len()
        ));
        return None;
    }
    let primary = params
        .primary
        .as_deref()
        .and_then(|p| {
            members
                .iter()
                .position(|m| m.id == p || m.name.as_deref() == Some(p))
        })
        .unwrap_or(0);
    members[1 - primary].mac.as_deref()
}

/// The layer-3 lines of one interface (`$a` is its adapter): both families, then DNS.
fn write_l3(
    s: &mut String,
    ck: &PsCheck,
    c: &super::Net,
    i: usize,
    l: &Link,
    warnings: &mut Vec<String>,
    search: &mut Search,
) -> Result<(), RenderError> {
    let l3: &L3 = &l.l3;
    let v4: Vec<String> = l3
        .addresses
        .iter()
        .filter(|a| a.addr().is_ipv4())
        .map(|a| format!("'{a}'"))
        .collect();
    let v6: Vec<String> = l3
        .addresses
        .iter()
        .filter(|a| a.addr().is_ipv6())
        .map(|a| format!("'{a}'"))
        .collect();
    let mut dhcp4 = l3.dhcp4;
    if dhcp4 && !v4.is_empty() {
        warnings.push(format!(
            "link {:?}: DHCPv4 and static IPv4 addresses; Windows has one or the other on an interface, the static addresses win",
            l.id
        ));
        dhcp4 = false;
    }
    let routes = |v6: bool| -> Vec<String> {
        l3.routes
            .iter()
            .filter(|r| r.to.addr().is_ipv6() == v6)
            .map(|r| {
                // No gateway: on-link, which Windows writes as the unspecified next hop.
                let via = match r.via {
                    Some(g) => g.to_string(),
                    None if v6 => "::".to_string(),
                    None => "0.0.0.0".to_string(),
                };
                format!(
                    "@{{ To = '{}'; Via = '{via}'; Metric = {} }}",
                    r.to,
                    r.metric.unwrap_or(DEFAULT_ROUTE_METRIC)
                )
            })
            .collect()
    };
    let mtu4 = l.mtu.unwrap_or(0);
    let mtu6 = match l.mtu {
        Some(m) if m < IPV6_MIN_MTU => {
            warnings.push(format!(
                "link {:?}: MTU {m} is below IPv6's minimum of {IPV6_MIN_MTU}; set for IPv4 only",
                l.id
            ));
            0
        }
        Some(m) => m,
        None => 0,
    };
    // Windows follows the router advertisement's M and O flags for DHCPv6 once router
    // discovery and DHCP are on, so stateless and stateful are the same two switches.
    let dhcp6 = matches!(l3.ipv6, Ipv6Auto::DhcpStateless | Ipv6Auto::DhcpStateful);
    let tf = |b: bool| if b { "$true" } else { "$false" };
    let _ = writeln!(
        s,
        "    Set-PrimerFamily -Index $a.ifIndex -Family IPv4 -Dhcp {} -RouterDiscovery $false -Addresses @({}) -Routes @({}) -Mtu {mtu4}",
        tf(dhcp4),
        v4.join(", "),
        routes(false).join(", ")
    );
    let _ = writeln!(
        s,
        "    Set-PrimerFamily -Index $a.ifIndex -Family IPv6 -Dhcp {} -RouterDiscovery {} -Addresses @({}) -Routes @({}) -Mtu {mtu6}",
        tf(dhcp6),
        tf(l3.ipv6.accept_ra()),
        v6.join(", "),
        routes(true).join(", ")
    );
    let dns = link_dns(c, l);
    let servers: Vec<String> = dns
        .nameservers
        .iter()
        .map(|a: &IpAddr| format!("'{a}'"))
        .collect();
    let suffix = match dns.search.first() {
        Some(d) => ck.domain(&lf(i, "dns.search[0]"), d)?,
        None => "''".to_string(),
    };
    for (j, d) in dns.search.iter().enumerate() {
        // Checked here too, so an error names the link's field, not the global list's.
        ck.domain(&lf(i, &format!("dns.search[{j}]")), d)?;
        search.add(d);
    }
    let _ = writeln!(
        s,
        "    Set-PrimerDns -Index $a.ifIndex -Servers @({}) -Suffix {suffix}",
        servers.join(", ")
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_double_quotes_and_refuse_expansion_and_smart_quotes() {
        assert_eq!(literal("eth0").unwrap(), "'eth0'");
        assert_eq!(literal("it's").unwrap(), "'it''s'");
        assert_eq!(literal("''").unwrap(), "''''''");
        for bad in [
            "",
            "a$b",
            "$(reboot)",
            "a`b",
            "a\"b",
            "a\nb",
            "a\rb",
            "a\0b",
            "a\u{85}b",
            "a\u{2028}b",
            "a\u{2018}b",
            "a\u{2019}; reboot; \u{2019}",
            "a\u{201A}b",
            "a\u{201B}b",
            "a\u{201C}b",
            "a\u{201D}b",
            "a\u{201E}b",
            // UTF-8 `đ` (C4 91) reads as `Ä‘` (U+2018 closes the literal) in cp1252.
            "x\u{111}; Restart-Computer; #",
            "caf\u{e9}",
            &"x".repeat(LITERAL_MAX + 1),
        ] {
            assert!(literal(bad).is_err(), "{bad:?}");
        }
        assert!(literal(&"x".repeat(LITERAL_MAX)).is_ok());
    }

    #[test]
    fn line_shapes() {
        for ok in [
            "$a = Get-PrimerAdapter 'AA-BB-CC-DD-EE-FF'",
            "Invoke-PrimerStep 'it''s' {",
            "    Set-PrimerDns -Index $a.ifIndex -Servers @('192.0.2.53') -Suffix ''",
            "x # comment with 'quote'",
            "# managed by primer: the drive's data",
            "}",
        ] {
            assert!(line_ok(ok), "{ok:?}");
        }
        for bad in [
            "x 'unclosed",
            "x 'a''",
            "x \"$(reboot)\"",
            "x `n",
            "x '\u{2019}'",
            "x \u{2018}a\u{2018}",
            "x '$(reboot)'",
            "x @'",
            "<# x",
            "x a#b",
            "x 'a\u{2028}b'",
            "x 'caf\u{e9}'",
            "# caf\u{e9}",
        ] {
            assert!(!line_ok(bad), "{bad:?}");
        }
    }

    #[test]
    fn macs_and_team_modes() {
        assert_eq!(windows_mac("52:54:00:aa:0b:01"), "52-54-00-AA-0B-01");
        assert_eq!(
            team_mode(BondMode::Lacp, Some("layer3+4")),
            Some(("Lacp", "TransportPorts"))
        );
        assert_eq!(
            team_mode(BondMode::ActiveBackup, None),
            Some(("SwitchIndependent", "Dynamic"))
        );
        assert_eq!(
            team_mode(BondMode::BalanceXor, Some("layer2")),
            Some(("Static", "MacAddresses"))
        );
        assert_eq!(team_mode(BondMode::Broadcast, None), None);
    }

    #[test]
    fn the_prelude_is_made_of_checked_lines() {
        for (n, line) in PRELUDE.lines().enumerate() {
            assert!(line_ok(line), "prelude line {}: {line:?}", n + 1);
        }
    }
}
