//! Renderers: the network model plus the chosen names into the files of one backend. Pure
//! (`render_*`): no I/O, deterministic (source order, no clock). Every file starts with the
//! [`HEADER`] line, which is how primer recognises its own files when it removes stale ones; a
//! renderer never produces a file outside [`Owned`] for its backend.
//!
//! Last line of defence against injected configuration: the parsers already dropped every
//! value that does not fit its grammar (`net::validate`), and still every renderer writes each
//! drive string through [`Check::token`] (one word: no control character, no white space, no
//! comment or shell character) and [`try_render`] checks every line of every file against the
//! shape of its syntax ([`check_lines`]). A failure refuses the whole backend's output with a
//! [`RenderError`] naming the file and field: nothing half-rendered is ever written.

pub mod eni;
pub mod netplan;
pub mod networkd;
pub mod networkmanager;
pub mod powershell;

use std::net::IpAddr;

use sha2::{Digest, Sha256};

use super::naming::Names;
use super::Backend;
use crate::model::grammar::{self, Esc};
use crate::model::network::{Dns, Link, LinkKind, NetworkConfig, Route, L3};

/// A value or a line a renderer refuses to write. Names the file and the field (or line).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("/{file}: {field}: {message}")]
pub struct RenderError {
    pub file: String,
    pub field: String,
    pub message: String,
}

/// The syntax of a rendered file, for the checks of values and lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Syntax {
    /// systemd `.network`, `.netdev`, `.link` (INI: `[Section]`, `Key=value`, `#`/`;` comments).
    Networkd,
    /// NetworkManager keyfile and `conf.d` drop-in (GKeyFile: `[group]`, `key=value`).
    Keyfile,
    /// ifupdown `interfaces` (stanzas; `up`/`down` lines run by `/bin/sh`).
    Eni,
    /// `resolv.conf` (`nameserver`, `search`).
    ResolvConf,
    /// netplan YAML.
    Netplan,
    /// A PowerShell script (Windows): single-quoted literals only ([`powershell::line_ok`]).
    PowerShell,
}

impl Syntax {
    /// The syntax of a file primer renders, from its path.
    pub fn of(path: &str) -> Syntax {
        if path.ends_with(".ps1") {
            Syntax::PowerShell
        } else if path.ends_with(".yaml") {
            Syntax::Netplan
        } else if path.ends_with("resolv.conf") {
            Syntax::ResolvConf
        } else if path.starts_with("etc/NetworkManager/") {
            Syntax::Keyfile
        } else if path.starts_with("etc/network/") {
            Syntax::Eni
        } else {
            Syntax::Networkd
        }
    }
}

/// Characters no rendered value may hold besides control characters: white space (it would
/// split one value into two words), `#` and `;` (comments in INI, keyfiles, `resolv.conf` and
/// the shell), quotes and the shell's metacharacters (ifupdown hands `up` lines to `/bin/sh`).
/// Every legitimate value (interface names, MAC addresses, DNS names, bond keywords, file-name
/// ids) is one word without any of them.
pub const NOT_IN_TOKEN: &[char] = &[
    ' ', '#', ';', '\'', '"', '`', '$', '&', '|', '<', '>', '(', ')', '{', '}', '*', '?', '!',
    '\\', '~', '=', ',',
];

/// `v` may be written as one value of a rendered file.
pub fn check_token(v: &str) -> Result<(), grammar::GrammarError> {
    if v.is_empty() {
        return Err(grammar::GrammarError::Empty);
    }
    grammar::line_safe_without(
        v,
        NOT_IN_TOKEN,
        "cannot be part of a value in a rendered network file (white space, comment, quote or shell character)",
    )?;
    if v.starts_with('-') {
        return Err(grammar::GrammarError::Forbidden {
            ch: '-',
            at: 0,
            why: "would start an option in an ifupdown command",
        });
    }
    Ok(())
}

/// The value check of one file: every drive-derived string goes through [`Check::token`].
pub(crate) struct Check<'p> {
    pub file: &'p str,
}

impl Check<'_> {
    /// `v` unchanged when it is one safe word; else an error naming the file and `field`.
    pub fn token<'v>(&self, field: &str, v: &'v str) -> Result<&'v str, RenderError> {
        check_token(v).map(|()| v).map_err(|e| RenderError {
            file: self.file.to_string(),
            field: field.to_string(),
            message: format!("{} {e}; nothing rendered", Esc(v)),
        })
    }
    /// `v` unchanged when it is a match glob ([`crate::model::network::check_glob`]: name
    /// characters and `*`, `?`, `[...]`, nothing a file or a shell gives another meaning).
    pub fn glob<'v>(&self, field: &str, v: &'v str) -> Result<&'v str, RenderError> {
        crate::model::network::check_glob(v)
            .map(|()| v)
            .map_err(|e| RenderError {
                file: self.file.to_string(),
                field: field.to_string(),
                message: format!("{} {e}; nothing rendered", Esc(v)),
            })
    }
    /// Every element of a list through [`Check::token`].
    pub fn tokens<'v>(&self, field: &str, vs: &'v [String]) -> Result<Vec<&'v str>, RenderError> {
        vs.iter()
            .enumerate()
            .map(|(j, v)| self.token(&format!("{field}[{j}]"), v))
            .collect()
    }
}

/// The field name of link `i` (its index in the model; the id may be what is wrong).
pub(crate) fn lf(i: usize, what: &str) -> String {
    format!("links[{i}].{what}")
}

/// Checks every line of a rendered file against the shape of its syntax: one line each (no
/// control character), and a comment, a section header, a `key=value` line, a stanza line or
/// a YAML mapping/list line as the syntax has them. An error names the file and the line.
pub fn check_lines(path: &str, content: &str) -> Result<(), RenderError> {
    let syntax = Syntax::of(path);
    let err = |n: usize, m: String| RenderError {
        file: path.to_string(),
        field: format!("line {}", n + 1),
        message: m,
    };
    if !content.ends_with('\n') {
        return Err(err(
            content.lines().count(),
            "file does not end with a newline".into(),
        ));
    }
    for (n, line) in content.split('\n').enumerate() {
        grammar::line_safe(line).map_err(|e| err(n, format!("{} {e}", Esc(line))))?;
        if line.is_empty() || (line.starts_with('#') && syntax != Syntax::PowerShell) {
            continue;
        }
        if !line_shape(syntax, line) {
            return Err(err(
                n,
                format!(
                    "{} is not a line of {syntax:?} syntax primer writes",
                    Esc(line)
                ),
            ));
        }
    }
    Ok(())
}

fn is_key(s: &str, extra: &[char]) -> bool {
    // Byte by byte (no decoding): a non-ASCII byte is never a key's, as no `extra` is.
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || (b.is_ascii() && extra.contains(&char::from(b))))
}

fn line_shape(syntax: Syntax, line: &str) -> bool {
    // ifupdown words: what primer writes there (names, addresses, MACs, DNS names, `ip` and
    // `sysctl` arguments) and nothing the shell gives a meaning to.
    let words = |s: &str| {
        // `"$IFACE"` (eni::IFACE) is the one quoted word primer writes: the real name of a
        // MAC-mapped interface, set by ifupdown, expanded by the shell as one word.
        let s = s.replace(eni::IFACE, "IFACE");
        s.split(' ').all(|w| {
            !w.is_empty()
                && w.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._:/+=@_-".contains(c))
        })
    };
    match syntax {
        // A comment line too: `<#` would open a block comment spanning lines.
        Syntax::PowerShell => powershell::line_ok(line),
        Syntax::Networkd | Syntax::Keyfile => {
            let extra: &[char] = if syntax == Syntax::Keyfile {
                &['-', '_', '+']
            } else {
                &[]
            };
            if let Some(sec) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                return is_key(sec, &['-']);
            }
            match line.split_once('=') {
                Some((k, v)) => {
                    is_key(k, extra)
                        && !v.is_empty()
                        && !v.starts_with(' ')
                        && !v.bytes().any(|b| matches!(b, b'"' | b'\'' | b'\\'))
                        && (syntax == Syntax::Networkd || !v.as_bytes().contains(&b' '))
                }
                None => false,
            }
        }
        Syntax::ResolvConf => match line.split_once(' ') {
            Some(("nameserver", v)) => v.parse::<std::net::IpAddr>().is_ok(),
            Some(("search", v)) => v.split(' ').all(|d| grammar::dns_name(d).is_ok()),
            _ => false,
        },
        Syntax::Eni => {
            if let Some(opt) = line.strip_prefix("    ") {
                let Some((k, args)) = opt.split_once(' ') else {
                    return false;
                };
                match k {
                    // The only commands primer writes: `ip` and `sysctl`, each a list of
                    // safe words (`down` ones end in `|| true`).
                    "up" | "down" => {
                        let args = args.strip_suffix(" || true").unwrap_or(args);
                        (args.starts_with("ip ") || args.starts_with("sysctl ")) && words(args)
                    }
                    _ => {
                        (ENI_OPTIONS.contains(&k)
                            || k.strip_prefix("bond-").is_some_and(|o| {
                                crate::model::network::bond_option(&o.replace('-', "_"))
                                    .is_some_and(|s| s.eni)
                            }))
                            && words(args)
                    }
                }
            } else {
                let w: Vec<&str> = line.split(' ').collect();
                match w.as_slice() {
                    ["auto", n] => match n.strip_prefix("mac/").and_then(|x| x.split_once("/=")) {
                        // A MAC-mapped stanza: `auto mac/MAC/=LOGICAL`.
                        Some((mac, logical)) => {
                            crate::model::network::check_mac(mac).is_ok()
                                && check_token(logical).is_ok()
                                && words(logical)
                        }
                        None => check_token(n).is_ok() && words(n),
                    },
                    ["iface", n, "inet" | "inet6", m] => {
                        check_token(n).is_ok()
                            && words(n)
                            && matches!(*m, "static" | "dhcp" | "manual" | "auto" | "loopback")
                    }
                    ["source" | "source-directory", p] => p.starts_with('/') || !p.is_empty(),
                    _ => false,
                }
            }
        }
        Syntax::Netplan => {
            let body = line.trim_start_matches(' ');
            let body = body.strip_prefix("- ").unwrap_or(body);
            if body.starts_with('"') && body.ends_with('"') && body.len() >= 2 {
                // A list item that is one quoted scalar.
                return yaml_quoted(body);
            }
            let (k, v) = match body.split_once(": ") {
                Some((k, v)) => (k, Some(v)),
                None => match body.strip_suffix(':') {
                    Some(k) => (k, None),
                    None => return false,
                },
            };
            let key_ok = is_key(k, &['-']) || (k.len() >= 2 && yaml_quoted(k));
            key_ok
                && v.is_none_or(|v| {
                    yaml_quoted(v)
                        || v == "[]"
                        || (v.starts_with('[')
                            && v.ends_with(']')
                            && v[1..v.len() - 1].split(", ").all(yaml_quoted))
                        || is_key(v, &['-', '.', '_'])
                })
        }
    }
}

/// A warning for a bond option `backend` cannot express (left out of its files).
pub(crate) fn bond_option_warning(l: &Link, kernel: &str, backend: &str) -> String {
    format!(
        "bond {:?}: option {kernel} cannot be expressed in {backend}; left out",
        l.id
    )
}

/// A bond option's value as one word of a rendered file: keywords and MACs through
/// [`Check::token`] once more, numbers, booleans and addresses as typed.
pub(crate) fn bond_value(
    ck: &Check<'_>,
    i: usize,
    o: &crate::model::network::BondOpt,
    sep: &str,
) -> Result<String, RenderError> {
    use crate::model::network::BondValue;
    match &o.value {
        BondValue::Word(w) => ck.token(&lf(i, o.spec.kernel), w).map(str::to_string),
        BondValue::Mac(m) => ck.token(&lf(i, o.spec.kernel), m).map(str::to_string),
        v => Ok(v.kernel(sep)),
    }
}

/// Options primer writes inside an ifupdown stanza.
const ENI_OPTIONS: &[&str] = &[
    "address",
    "mtu",
    "hwaddress",
    "bond-master",
    "bond-primary",
    "bond-slaves",
    "bond-mode",
    "bond-miimon",
    "bond-xmit-hash-policy",
    "bond-lacp-rate",
    "vlan-raw-device",
    "bridge_ports",
    "bridge_stp",
    "dns-nameservers",
    "dns-search",
    "accept_ra",
    "autoconf",
    "dhcp",
];

/// `s` is one YAML double-quoted scalar as `netplan::q` writes it: quotes and backslashes
/// escaped inside, nothing after the closing quote.
fn yaml_quoted(s: &str) -> bool {
    let Some(inner) = s.strip_prefix('"').and_then(|x| x.strip_suffix('"')) else {
        return false;
    };
    let mut esc = false;
    for c in inner.chars() {
        match (esc, c) {
            (true, _) => esc = false,
            (false, '\\') => esc = true,
            (false, '"') => return false,
            _ => {}
        }
    }
    !esc
}

/// First line of every file primer renders (with the comment character of `#`, which all four
/// syntaxes accept).
pub const HEADER: &str = "# managed by primer: generated from the config drive's network data; local edits are kept until that data changes";

/// One rendered file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedFile {
    /// Relative to the target root (`etc/systemd/network/10-primer-x.network`).
    pub path: String,
    pub content: Text,
    pub mode: u32,
}

/// A rendered file's text, read as the `str` it is: the [`HEADER`] line and a range of the one
/// buffer every file of a rendering shares ([`crate::model::Bytes::headed`]). One allocation
/// per file, each with its reference-counted header and its copy of the header line, was
/// ~7 MB of the 28,000 files of 14,000 VLANs (issue 15); the planner's steps hold these texts
/// as they are ([`Text::into_bytes`]).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Text(crate::model::Bytes);

impl Text {
    /// The text as a step's content: the same range of the same buffer, no copy.
    pub fn into_bytes(self) -> crate::model::Bytes {
        self.0
    }

    /// Always the whole text: its parts were cut from `str`s at a file's and a line's bounds
    /// (joined on first use: a caller that only writes or hashes it uses the `Bytes`).
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(self.0.as_slice()).unwrap_or_default()
    }
}

impl From<String> for Text {
    fn from(s: String) -> Text {
        Text(s.into())
    }
}

impl std::ops::Deref for Text {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Text {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<[u8]> for Text {
    fn as_ref(&self) -> &[u8] {
        self.0.as_slice()
    }
}

impl PartialEq<str> for Text {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Text {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl std::fmt::Debug for Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl std::fmt::Display for Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The files of one backend and what could not be rendered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rendered {
    pub files: Vec<RenderedFile>,
    /// Each names the link (id) it is about.
    pub warnings: Vec<String>,
    /// While a renderer runs: the texts of the files it added ([`Rendered::push`]) after their
    /// header line, one after another, and where each ends ([`NOT_HEADED`]: a file without
    /// the line, its text already its own); shared by the files when it is
    /// [`done`](Rendered::done).
    text: String,
    ends: Vec<usize>,
    /// The first file whose lines fail [`check_lines`], in the order the files were added.
    bad_line: Option<RenderError>,
}

/// A file's end in [`Rendered::ends`] when it does not start with [`HEADER`].
const NOT_HEADED: usize = usize::MAX;

impl Rendered {
    /// Adds a file: its lines checked ([`check_lines`]), its text after the header line
    /// copied into the rendering's one buffer (the caller's freed).
    pub(crate) fn push(&mut self, path: String, content: &str, mode: u32) {
        if self.bad_line.is_none() {
            self.bad_line = check_lines(&path, content).err();
        }
        let text = match content.strip_prefix(HEADER) {
            Some(body) => {
                self.text.push_str(body);
                self.ends.push(self.text.len());
                Text::default()
            }
            // Never: every file primer renders starts with the line.
            None => {
                self.ends.push(NOT_HEADED);
                Text::from(content.to_string())
            }
        };
        self.files.push(RenderedFile {
            path,
            content: text,
            mode,
        });
    }

    /// The rendering finished: the first line a file may not hold (checked after every value
    /// the renderer checks itself, as the whole output is refused for either), else the files
    /// with their shared text.
    pub(crate) fn done(mut self) -> Result<Rendered, RenderError> {
        if let Some(e) = self.bad_line.take() {
            return Err(e);
        }
        let ends = std::mem::take(&mut self.ends);
        let texts = crate::model::Bytes::headed(
            HEADER.as_bytes(),
            std::mem::take(&mut self.text).into_bytes(),
            ends.iter().copied().filter(|e| *e != NOT_HEADED).collect(),
        );
        let mut texts = texts.into_iter();
        for (f, end) in self.files.iter_mut().zip(ends) {
            if end != NOT_HEADED {
                if let Some(t) = texts.next() {
                    f.content = Text(t);
                }
            }
        }
        Ok(self)
    }
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
        Backend::PowerShell => Owned {
            dir: powershell::DIR,
            prefix: "network.ps1",
            extra: &[],
        },
    }
}

/// Renders `c` for `backend`, or refuses: a value that cannot be written into its file or a
/// line that is not of the file's syntax gives an error naming the file and field, and no
/// file at all (a half-rendered network is worse than the image's own).
pub fn try_render(
    backend: Backend,
    c: &NetworkConfig,
    names: &Names,
    o: &RenderOptions,
) -> Result<Rendered, RenderError> {
    // NetworkManager and ifupdown have no name-glob or driver match (ifupdown's patterns see
    // only the NICs present when it runs, NetworkManager's `[match]` is not in every release
    // primer targets): those links are resolved against the target's interfaces here, and the
    // names chosen again for the result.
    let resolved;
    let renamed;
    let mut pre = Vec::new();
    let (c, names) = if matches!(backend, Backend::NetworkManager | Backend::Eni)
        && c.links.iter().any(Link::has_match_rules)
    {
        let (x, w) = super::naming::expand_matches(c, &names.host);
        pre = w;
        resolved = x;
        renamed = super::naming::assign_names_host(&resolved, &names.host);
        (&resolved, &renamed)
    } else {
        (c, names)
    };
    let mut r = match backend {
        Backend::Networkd => networkd::render_networkd(c, names),
        Backend::NetworkManager => networkmanager::render_networkmanager(c, names),
        Backend::Eni => eni::render_eni(c, names, o),
        Backend::Netplan => netplan::render_netplan(c, names, o),
        Backend::PowerShell => powershell::render_powershell(c, names),
    }?;
    if !pre.is_empty() {
        pre.append(&mut r.warnings);
        r.warnings = pre;
    }
    // Every file's lines were checked as it was added (`Rendered::push`).
    Ok(r)
}

/// [`try_render`] for callers that print: a refusal gives no file and the error as a warning.
pub fn render(backend: Backend, c: &NetworkConfig, names: &Names, o: &RenderOptions) -> Rendered {
    try_render(backend, c, names, o).unwrap_or_else(|e| Rendered {
        warnings: vec![format!("refused: {e}")],
        ..Rendered::default()
    })
}

/// A configuration with its links indexed, as every renderer reads it: renderers ask per link
/// which bond or bridge holds it and what its parent or members are, and `NetworkConfig`'s own
/// `link` / `controller_of` scan every link (quadratic in links, issue 15). Derefs to the
/// configuration; these two answer from the index, equal to the scans.
pub(crate) struct Net<'a> {
    config: &'a NetworkConfig,
    index: crate::model::network::LinkIndex<'a>,
}

impl<'a> Net<'a> {
    pub(crate) fn new(config: &'a NetworkConfig) -> Net<'a> {
        Net {
            config,
            index: crate::model::network::LinkIndex::new(config),
        }
    }

    pub(crate) fn link(&self, id: &str) -> Option<&'a Link> {
        self.index.link(id)
    }

    /// Where the first link of this id is (`links.iter().position`, from the index).
    pub(crate) fn position(&self, id: &str) -> Option<usize> {
        self.index.position(id)
    }

    pub(crate) fn controller_of(&self, id: &str) -> Option<&'a Link> {
        self.index.controller_of(id)
    }
}

impl std::ops::Deref for Net<'_> {
    type Target = NetworkConfig;
    fn deref(&self) -> &NetworkConfig {
        self.config
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
    // Taken names in a set, and per base the suffix to try next: a scan of `out` per
    // candidate, from suffix 1 each time, was quadratic in links (ids that differ only in
    // characters `safe_id` replaces share a base; issue 15). Names are only added, so every
    // suffix below the last one a base took is still taken: the names are the same.
    let mut taken: std::collections::HashSet<String> = std::collections::HashSet::new();
    let mut next: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for l in &c.links {
        let base = safe_id(&l.id);
        let mut cand = base.clone();
        if taken.contains(&cand) {
            let i = next.entry(base.clone()).or_insert(1);
            loop {
                cand = format!("{base}-{i}");
                *i += 1;
                if !taken.contains(&cand) {
                    break;
                }
            }
        }
        taken.insert(cand.clone());
        out.push(cand);
    }
    out
}

/// DNS a link's configuration carries: its own, then the machine-wide servers. Only links with
/// layer-3 configuration carry DNS (a bond member or a bare VLAN parent cannot use it).
pub(crate) fn link_dns(c: &Net, l: &Link) -> Dns {
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
pub(crate) fn is_member(c: &Net, id: &str) -> bool {
    c.controller_of(id).is_some()
}

/// A warning for layer-3 configuration on a member link, which is ignored.
pub(crate) fn member_l3_warning(c: &Net, l: &Link) -> Option<String> {
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

/// Each VLAN as `(parent id, link index)`, sorted: the VLANs of a parent, in link order, are one
/// run found by binary search (a scan of every link for each link was quadratic: 14,000
/// chained VLANs, 196 million comparisons). Sorted by the crate's one sort ([`crate::sort`]).
pub(crate) fn vlans_by_parent(c: &crate::model::network::NetworkConfig) -> Vec<(&str, usize)> {
    let mut vlans: Vec<(&str, usize)> = c
        .links
        .iter()
        .enumerate()
        .filter_map(|(j, v)| match &v.kind {
            LinkKind::Vlan { parent, .. } => Some((parent.as_str(), j)),
            _ => None,
        })
        .collect();
    crate::sort::sort(&mut vlans);
    vlans
}

/// Links in dependency order: physical, then bonds and bridges, then VLANs (a VLAN on a VLAN
/// after its parent), keeping source order within each group.
pub(crate) fn ordered<'a>(c: &Net<'a>) -> Vec<(usize, &'a Link)> {
    let rank = |l: &Link| match l.kind {
        LinkKind::Physical => 0,
        LinkKind::Bond { .. } | LinkKind::Bridge { .. } => 1,
        LinkKind::Vlan { .. } => 2,
    };
    // Every chain measured once (walked per link it was cubic in chained VLANs, issue 15).
    let depth = c.index.vlan_chains().depth;
    let mut v: Vec<(usize, &Link)> = c.config.links.iter().enumerate().collect();
    crate::sort::sort_by_key(&mut v, |(i, l)| (rank(l), depth[*i], *i));
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    /// File-name parts as the scan from suffix 1 gave them, on ids that collide in their safe
    /// form and ids that look like a generated suffix.
    #[test]
    fn file_ids_are_unique_and_as_before() {
        let ids = [
            "a!", "a@", "a_", "a_-1", "a#", "b", "a_-2", "a$", "b", "a_-1", "a%", "b-1", "b",
        ];
        let mut c = NetworkConfig::default();
        for id in ids {
            c.links.push(Link::new(id, LinkKind::Physical));
        }
        let mut old: Vec<String> = Vec::new();
        for l in &c.links {
            let base = safe_id(&l.id);
            let mut cand = base.clone();
            let mut i = 1;
            while old.contains(&cand) {
                cand = format!("{base}-{i}");
                i += 1;
            }
            old.push(cand);
        }
        assert_eq!(file_ids(&c), old);
        let set: std::collections::HashSet<_> = old.iter().collect();
        assert_eq!(set.len(), old.len());
    }

    /// Every file of a rendering shares one buffer (one allocation, reference-counted header
    /// and header line per file cost ~7 MB of 14,000 VLANs' 28,000 files), with the text it
    /// had as a file of its own.
    #[test]
    fn rendered_files_share_one_buffer() {
        let mut nic = Link::new("nic", LinkKind::Physical);
        nic.mac = Some("52:54:00:aa:00:01".into());
        let mut links = vec![nic];
        for i in 1..=2000u16 {
            let parent = if i == 1 {
                "nic".into()
            } else {
                format!("v{}", i - 1)
            };
            let mut l = Link::new(format!("v{i}"), LinkKind::Vlan { parent, vlan_id: i });
            l.name = Some(format!("vl{i}"));
            links.push(l);
        }
        let c = NetworkConfig {
            links,
            ..Default::default()
        };
        let names = assign_names(&c, &Default::default());
        for b in [Backend::Networkd, Backend::NetworkManager] {
            let r = try_render(b, &c, &names, &RenderOptions::default()).unwrap();
            assert!(r.files.len() > 2000, "{b}: {}", r.files.len());
            for w in r.files.windows(2) {
                let (a, c) = (w[0].content.clone(), w[1].content.clone());
                assert!(a.into_bytes().shares(&c.into_bytes()), "{b}: {}", w[1].path);
            }
            let joined: usize = r.files.iter().map(|f| f.content.len()).sum();
            for f in &r.files {
                assert!(f.content.starts_with(HEADER), "{b}: {}", f.path);
                assert!(f.content.ends_with('\n'), "{b}: {}", f.path);
                assert!(f.content.clone().into_bytes().equals(f.content.as_bytes()));
            }
            assert!(joined > r.files.len() * HEADER.len());
            assert!(r.text.is_empty() && r.ends.is_empty());
        }
    }

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

    use crate::model::network::{BondMode, BondParams};
    use crate::net::naming::{assign_names, LinkName};

    /// One NIC with an address, a search domain and a bond over it.
    fn model(search: &str) -> NetworkConfig {
        let mut nic = Link::new("tap0", LinkKind::Physical);
        nic.mac = Some("52:54:00:aa:00:01".into());
        nic.name = Some("ens3".into());
        let mut bond = Link::new(
            "bond0",
            LinkKind::Bond {
                members: vec!["tap0".into()],
                params: BondParams::new(BondMode::ActiveBackup),
            },
        );
        bond.l3.addresses.push("192.0.2.10/24".parse().unwrap());
        bond.l3.dns.search.push(search.into());
        NetworkConfig {
            links: vec![nic, bond],
            ..Default::default()
        }
    }

    fn opts() -> RenderOptions {
        RenderOptions {
            netplan_renderer: None,
            eni_resolv_conf: true,
        }
    }

    /// A chain of 3,000 VLANs and a bond over 3,000 NICs (what a 1 MiB `network_data.json`
    /// holds) validate and render for every backend in milliseconds: each lookup by link id
    /// was a scan, each VLAN's chain walked per link (the chain alone took minutes).
    #[test]
    fn thousands_of_chained_vlans_and_bond_members_render_in_linear_time() {
        let n = 3000;
        let mut c = NetworkConfig::default();
        let mut nic = Link::new("t", LinkKind::Physical);
        nic.mac = Some("52:54:00:aa:00:01".into());
        c.links.push(nic);
        for i in 1..n {
            let parent = if i == 1 {
                "t".to_string()
            } else {
                format!("v{}", i - 1)
            };
            c.links.push(Link::new(
                format!("v{i}"),
                LinkKind::Vlan {
                    parent,
                    vlan_id: (i % 4000) as u16 + 1,
                },
            ));
        }
        for i in 0..n {
            let mut p = Link::new(format!("p{i}"), LinkKind::Physical);
            p.mac = Some(format!("52:54:01:00:{:02x}:{:02x}", i >> 8, i & 255));
            c.links.push(p);
        }
        c.links.push(Link::new(
            "b",
            LinkKind::Bond {
                members: (0..n).map(|i| format!("p{i}")).collect(),
                params: BondParams::new(BondMode::ActiveBackup),
            },
        ));
        crate::net::validate(&c, "network_data.json").unwrap();
        let depth = crate::model::network::LinkIndex::new(&c)
            .vlan_chains()
            .depth;
        assert_eq!(depth[n - 1], n - 1);
        let names = assign_names(&c, &Default::default());
        for b in Backend::ALL {
            let r = try_render(b, &c, &names, &opts()).unwrap();
            assert!(!r.files.is_empty(), "{b:?}");
        }
    }

    /// 20,000 NICs, each renamed (its MAC not on the target yet: ifupdown's MAC-mapped
    /// stanza), each with an address, a name server and a search domain of its own. ifupdown
    /// searched the NICs not on the target per link and copied the growing resolver list per
    /// link, PowerShell searched its growing suffix list per domain: 20,000 x 20,000 steps
    /// (minutes in a debug build). Counts, not time: every NIC and domain is in the files.
    #[test]
    fn twenty_thousand_nics_with_their_own_dns_render_in_linear_time() {
        let n = 20_000;
        let mut c = NetworkConfig::default();
        for i in 0..n {
            let mut p = Link::new(format!("n{i}"), LinkKind::Physical);
            p.mac = Some(format!("52:54:01:00:{:02x}:{:02x}", i >> 8, i & 255));
            p.name = Some(format!("e{i}"));
            p.l3.addresses
                .push(format!("10.{}.{}.1/24", i >> 8, i & 255).parse().unwrap());
            p.l3.dns
                .nameservers
                .push(format!("192.0.{}.{}", i >> 8, i & 255).parse().unwrap());
            p.l3.dns.search.push(format!("d{i}.example"));
            c.links.push(p);
        }
        let names = assign_names(&c, &Default::default());
        assert_eq!(names.missing_macs.len(), n);
        let r = try_render(Backend::Eni, &c, &names, &opts()).unwrap();
        let eni = &r.files[0].content;
        assert_eq!(eni.matches("\nauto mac/").count(), n);
        assert_eq!(eni.matches("    address 10.").count(), n);
        let resolv = &r.files[1].content;
        assert!(resolv.ends_with(
            "nameserver 192.0.0.0\nnameserver 192.0.0.1\nnameserver 192.0.0.2\nsearch d0.example d1.example d2.example d3.example d4.example d5.example\n"
        ));
        let r = try_render(Backend::PowerShell, &c, &names, &opts()).unwrap();
        let ps = &r.files[0].content;
        let list = ps
            .lines()
            .find(|l| l.contains("-SuffixSearchList"))
            .unwrap();
        assert_eq!(list.matches(".example'").count(), n);
        assert!(list.contains("@('d0.example', 'd1.example', "));
    }

    #[test]
    fn every_backend_renders_lines_of_its_syntax() {
        let c = model("ok.example");
        let names = assign_names(&c, &Default::default());
        for b in Backend::ALL {
            let r = try_render(b, &c, &names, &opts()).unwrap();
            assert!(!r.files.is_empty(), "{b}");
            for f in &r.files {
                assert_eq!(check_lines(&f.path, &f.content), Ok(()), "{b}: {}", f.path);
            }
            assert!(
                r.files.iter().any(|f| f.content.contains("ok.example")),
                "{b}: {r:?}"
            );
        }
    }

    #[test]
    fn a_value_the_file_cannot_carry_is_refused_by_every_backend() {
        // A model built around the parsers' checks: the renderers' own check refuses it.
        for evil in [
            "x.example\n    up touch /tmp/pwned",
            "x.example\n[Network]\nDNS=203.0.113.1",
            "x.example#c",
            "x.example;c",
            "x\0y",
            "x\u{85}y",
            "x\u{2028}y",
            "a b",
        ] {
            let c = model(evil);
            let names = assign_names(&c, &Default::default());
            for b in Backend::ALL {
                let e = try_render(b, &c, &names, &opts()).unwrap_err();
                assert!(e.field.starts_with("links[1].dns.search"), "{b}: {e}");
                let dir = owned(b).dir;
                assert!(e.file.starts_with(dir), "{b}: {e}");
                assert!(!e.to_string().contains('\n'), "{b}: {e}");
                let r = render(b, &c, &names, &opts());
                assert!(r.files.is_empty(), "{b}: nothing half-rendered");
                assert!(
                    r.warnings[0].starts_with(&format!("refused: /{dir}")),
                    "{r:?}"
                );
            }
        }
    }

    #[test]
    fn names_from_outside_the_model_are_checked_too() {
        // A name handed in by the caller (not from the drive's model) with a shell character.
        let c = model("ok.example");
        let mut names = assign_names(&c, &Default::default());
        names.links.insert(
            "bond0".into(),
            LinkName {
                name: Some("b;reboot".into()),
                rename: false,
            },
        );
        for b in Backend::ALL {
            let e = try_render(b, &c, &names, &opts()).unwrap_err();
            assert!(e.field.starts_with("links["), "{b}: {e}");
            assert!(e.to_string().contains("\"b;reboot\""), "{b}: {e}");
        }
    }

    #[test]
    fn line_shapes() {
        let ok = [
            ("etc/systemd/network/10-primer-a.network", "# c\n[Match]\nName=eth0\n\n[Network]\nDomains=a.example b.example\n"),
            ("etc/NetworkManager/system-connections/primer-a.nmconnection", "[connection]\nid=primer-a\n[ipv4]\ndns-search=a.example;\nroute1=10.0.0.0/8,10.0.0.1,100\n"),
            ("etc/NetworkManager/conf.d/90-primer.conf", "[main]\nno-auto-default+=mac:52:54:00:aa:00:01\n"),
            ("etc/network/interfaces.d/primer", "auto eth0\niface eth0 inet static\n    address 10.0.0.5/24\n    dns-search a.example\n    up ip -6 route add default via fe80::1 dev eth0\n    down ip route del default dev eth0 || true\n    up sysctl -q -e -w net.ipv6.conf.eth0/1.accept_ra=0\n"),
            ("etc/resolv.conf", "# c\nnameserver 192.0.2.53\nsearch a.example b.example\n"),
            ("etc/netplan/50-primer.yaml", "network:\n  version: 2\n  ethernets:\n    \"eth0\":\n      match:\n        macaddress: \"52:54:00:aa:00:01\"\n      interfaces: [\"a\", \"b\"]\n      link-local: []\n      routes:\n        - to: \"default\"\n      nameservers:\n        search: [\"a.example\"]\n"),
        ];
        for (p, c) in ok {
            assert_eq!(check_lines(p, c), Ok(()), "{p}");
        }
        let bad = [
            (
                "etc/systemd/network/10-primer-a.network",
                "[Network]\nDomains=a\r\n",
            ),
            (
                "etc/systemd/network/10-primer-a.network",
                "[Network]\nExecStart /bin/sh\n",
            ),
            (
                "etc/NetworkManager/system-connections/primer-a.nmconnection",
                "[ipv4]\ndns-search=a b;\n",
            ),
            (
                "etc/network/interfaces.d/primer",
                "iface eth0 inet static\n    up touch /tmp/x\n",
            ),
            (
                "etc/network/interfaces.d/primer",
                "iface eth0 inet static\n    up ip route add default dev e;reboot\n",
            ),
            (
                "etc/network/interfaces.d/primer",
                "iface eth0 inet static\n    pre-up reboot\n",
            ),
            ("etc/network/interfaces.d/primer", "touch /tmp/x\n"),
            ("etc/resolv.conf", "search a_b.example\n"),
            ("etc/resolv.conf", "options rotate\n"),
            ("etc/netplan/50-primer.yaml", "network:\n  x: \"a\" # c\n"),
            ("etc/netplan/50-primer.yaml", "network:\n  x: \"a\"\"\n"),
            ("etc/resolv.conf", "search a.example"),
        ];
        for (p, c) in bad {
            let e = check_lines(p, c).unwrap_err();
            assert_eq!(e.file, p);
            assert!(e.field.starts_with("line "), "{e}");
        }
    }

    #[test]
    fn tokens() {
        for good in [
            "eth0",
            "52:54:00:aa:00:01",
            "layer3+4",
            "a.example",
            "primer-tap0",
        ] {
            assert_eq!(check_token(good), Ok(()), "{good:?}");
        }
        for bad in [
            "", "a b", "a\tb", "a#b", "a;b", "a$b", "a`b", "a\"b", "-a", "a\nb", "a=b",
        ] {
            assert!(check_token(bad).is_err(), "{bad:?}");
        }
    }
}
