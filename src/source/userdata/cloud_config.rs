//! One cloud-config part, from its generic YAML [`Node`] to a typed [`Partial`] (only the keys
//! the part gives), and the merge rules between parts and between vendor and user data.
//!
//! Types are read as cloud-init reads them (strings or lists where it accepts both, YAML 1.1
//! booleans and `"yes"`-style strings, octal modes as integers or strings). A supported key with
//! a wrong type is one warning naming the key and the expected type, and the key is ignored (as
//! if absent); the rest of the part still applies. Every unsupported key, nested ones included
//! (`users[0].expiredate`), goes into ONE warning per part, sorted. Messages name kinds, never
//! values: a value may be a password.

use super::carve::{self, Decode, Literal};
use super::yaml::Node;
use super::{gunzip, Budget};
use crate::model::bytes::TooLarge;
use crate::model::grammar;
use crate::model::userdata::{
    CaCerts, CcUser, Chpasswd, CloudConfig, Command, ManageEtcHosts, MountEntry, Ntp,
    PasswordValue, WriteFile,
};
use crate::model::Bytes;
use crate::model::{Report, Secret};
use crate::source::value::decode_base64_owned;

/// Where a part's warnings go and what they say about the part.
pub(crate) struct Ctx<'a> {
    pub file: &'a str,
    /// Appended to messages: `""` for a whole blob, `" (part 2 'cfg.yaml')"` for a MIME part.
    pub at: String,
    pub report: &'a mut Report,
    pub budget: &'a mut Budget,
    /// Largest decoded `write_files` content.
    pub max_file_bytes: usize,
    /// A cloud-config kept on the device whose `write_files` contents were carved out of the
    /// parse: the document and each content's placeholder and block (streamed, never held).
    pub carved: Option<(Bytes, Vec<(String, Literal)>)>,
    /// The contents streamed from `carved`'s document, one slot per block (made at the first
    /// taken: one allocation for all, see [`carve::set`]).
    members: Option<crate::model::bytes::DerivedSet>,
    /// Where [`take_carved`](Ctx::take_carved) looks first.
    next_carved: usize,
    unsupported: Vec<String>,
}

impl<'a> Ctx<'a> {
    pub fn new(
        file: &'a str,
        at: String,
        report: &'a mut Report,
        budget: &'a mut Budget,
        max_file_bytes: usize,
    ) -> Self {
        Ctx {
            file,
            at,
            report,
            budget,
            max_file_bytes,
            carved: None,
            members: None,
            next_carved: 0,
            unsupported: Vec::new(),
        }
    }

    /// The carved block whose placeholder is `s`, taken (each is used once: its placeholder is
    /// cleared). The blocks come in document order, as the entries asking for them: the one
    /// after the last taken is looked at first, so 10,000 entries cost 10,000 comparisons, not
    /// 50 million.
    fn take_carved(&mut self, s: &str) -> Option<(Bytes, Literal, usize)> {
        // A cleared slot is empty, and so is the document's own empty value (`content: ''`):
        // an empty string never names a block (it would take one already taken).
        if s.is_empty() {
            return None;
        }
        let (doc, list) = self.carved.as_mut()?;
        let next = self.next_carved;
        // Looked for from there on first: the list also holds blocks no entry asks for (a
        // carved value of another key, already put back in the document), skipped in order.
        let i = match list
            .get(next..)
            .and_then(|r| r.iter().position(|(t, _)| t == s))
        {
            Some(k) => next + k,
            None => list.iter().position(|(t, _)| t == s)?,
        };
        let (t, lit) = list.get_mut(i)?;
        std::mem::take(t);
        self.next_carved = i + 1;
        let lit = lit.clone();
        if self.members.is_none() {
            self.members = Some(carve::set(doc, list.len()));
        }
        Some((doc.clone(), lit, i))
    }

    /// Gives back what the contents' set no longer needs (once every entry is converted).
    pub fn done(&self) {
        if let Some(m) = &self.members {
            m.shrink();
        }
    }

    fn warn(&mut self, field: &str, message: impl std::fmt::Display) {
        let m = format!("{message}{}", self.at);
        self.report.warn(self.file, field, m);
    }

    fn wrong(&mut self, field: &str, expected: &str, found: &Node) {
        self.warn(
            field,
            format!("expected {expected}, found {}; ignored", found.kind()),
        );
    }

    fn unsupported(&mut self, key: String) {
        self.unsupported.push(key);
    }
}

/// The keys one part gives: `None` = absent (or ignored for a wrong type); `Some(None)` or an
/// empty list = given as null/empty (it still replaces an earlier part's value).
#[derive(Debug, Clone, Default)]
pub(crate) struct Partial {
    pub hostname: Option<Option<String>>,
    pub fqdn: Option<Option<String>>,
    pub prefer_fqdn_over_hostname: Option<Option<bool>>,
    pub user: Option<Option<CcUser>>,
    pub users: Option<Vec<CcUser>>,
    pub ssh_authorized_keys: Option<Vec<String>>,
    pub write_files: Option<Vec<WriteFile>>,
    pub runcmd: Option<Vec<Command>>,
    pub bootcmd: Option<Vec<Command>>,
    pub password: Option<Option<Secret>>,
    pub chpasswd: Option<PartialChpasswd>,
    pub ssh_pwauth: Option<Option<bool>>,
    pub ssh_deletekeys: Option<Option<bool>>,
    pub ssh_genkeytypes: Option<Option<Vec<String>>>,
    /// `vendor_data: {enabled: false}` (only meaningful in user data).
    pub vendor_data_enabled: Option<Option<bool>>,
    pub disable_root: Option<Option<bool>>,
    pub disable_root_opts: Option<Option<String>>,
    // ---- system keys (README "Cloud-config keys") ----
    pub manage_etc_hosts: Option<Option<ManageEtcHosts>>,
    pub preserve_hostname: Option<Option<bool>>,
    pub timezone: Option<Option<String>>,
    pub locale: Option<Option<String>>,
    pub ntp: Option<Option<Ntp>>,
    pub ca_certs: Option<Option<CaCerts>>,
    /// Entries as given (1 to 6 fields, `None` for a null field), completed in `finish`.
    pub mounts: Option<Option<Vec<Vec<Option<String>>>>>,
    pub mount_default_fields: Option<Option<Vec<Option<String>>>>,
    pub growpart: Option<Option<bool>>,
    pub resize_rootfs: Option<Option<bool>>,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct PartialChpasswd {
    pub users: Option<Vec<(String, PasswordValue)>>,
    pub expire: Option<Option<bool>>,
}

macro_rules! overlay {
    ($dst:expr, $src:expr; $($f:ident),*) => {
        $( if $src.$f.is_some() { $dst.$f = $src.$f; } )*
    };
}

impl Partial {
    /// A later part of the same origin: every top-level key it gives replaces the earlier value
    /// whole (cloud-init's `dict(replace)+list()+str()` for cloud-config parts; lists are
    /// replaced, not appended).
    pub fn overlay(&mut self, later: Partial) {
        overlay!(self, later; hostname, fqdn, prefer_fqdn_over_hostname, user, users,
            ssh_authorized_keys, write_files, runcmd, bootcmd, password, chpasswd, ssh_pwauth,
            vendor_data_enabled);
        overlay!(self, later; ssh_deletekeys, ssh_genkeytypes);
        overlay!(self, later; disable_root, disable_root_opts);
        overlay!(self, later; manage_etc_hosts, preserve_hostname, timezone, locale, ntp,
            ca_certs, mounts, mount_default_fields, growpart, resize_rootfs);
    }

    /// User data over vendor data, key by key: a key the user gives wins; vendor keys absent
    /// from user data still apply. `chpasswd` merges one level deeper (`list`/`users` and
    /// `expire` separately), as cloud-init's recursive dict merge of the two does.
    pub fn user_over_vendor(vendor: Partial, user: Partial) -> Partial {
        let chpasswd = match (vendor.chpasswd.clone(), user.chpasswd.clone()) {
            (Some(v), Some(u)) => Some(PartialChpasswd {
                users: u.users.or(v.users),
                expire: u.expire.or(v.expire),
            }),
            (v, u) => u.or(v),
        };
        let mut out = vendor;
        out.overlay(user);
        out.chpasswd = chpasswd;
        out
    }

    /// The final configuration, defaults filled in.
    pub fn finish(self) -> CloudConfig {
        let chpasswd = self.chpasswd.unwrap_or_default();
        CloudConfig {
            hostname: self.hostname.flatten(),
            fqdn: self.fqdn.flatten(),
            prefer_fqdn_over_hostname: self.prefer_fqdn_over_hostname.flatten(),
            user: self.user.flatten(),
            users_given: self.users.is_some(),
            users: self.users.unwrap_or_default(),
            ssh_authorized_keys: self.ssh_authorized_keys.unwrap_or_default(),
            write_files: self.write_files.unwrap_or_default(),
            runcmd: self.runcmd.unwrap_or_default(),
            bootcmd: self.bootcmd.unwrap_or_default(),
            password: self.password.flatten(),
            chpasswd: Chpasswd {
                users: chpasswd.users.unwrap_or_default(),
                expire: chpasswd.expire.flatten(),
            },
            ssh_pwauth: self.ssh_pwauth.flatten(),
            ssh_deletekeys: self.ssh_deletekeys.flatten(),
            ssh_genkeytypes: self.ssh_genkeytypes.flatten(),
            disable_root: self.disable_root.flatten(),
            disable_root_opts: self.disable_root_opts.flatten(),
            manage_etc_hosts: self.manage_etc_hosts.flatten(),
            preserve_hostname: self.preserve_hostname.flatten(),
            timezone: self.timezone.flatten(),
            locale: self.locale.flatten(),
            ntp: self.ntp.flatten(),
            ca_certs: self.ca_certs.flatten(),
            mounts: self
                .mounts
                .flatten()
                .map(|m| complete_mounts(m, self.mount_default_fields.flatten())),
            grow_root: match (self.growpart.flatten(), self.resize_rootfs.flatten()) {
                (None, None) => None,
                (g, r) => Some(g.unwrap_or(true) && r.unwrap_or(true)),
            },
        }
    }
}

/// Converts one part's document. Warnings go to `ctx`; the unsupported keys are flushed as one
/// warning at the end.
pub(crate) fn convert(node: Node, ctx: &mut Ctx) -> Partial {
    let mut p = Partial::default();
    let map = match node {
        Node::Map(m) => m,
        Node::Null => return p,
        other => {
            ctx.warn(
                "",
                format!(
                    "cloud-config: expected a mapping, found {}; part ignored",
                    other.kind()
                ),
            );
            return p;
        }
    };
    for (key, v) in map {
        match key.as_str() {
            "hostname" => p.hostname = opt(ctx, &key, v, "a string", text),
            "fqdn" => p.fqdn = opt(ctx, &key, v, "a string", text),
            "prefer_fqdn_over_hostname" => {
                p.prefer_fqdn_over_hostname = opt(ctx, &key, v, "a boolean", boolish)
            }
            "user" => p.user = default_user(ctx, v),
            "users" => p.users = users(ctx, v),
            "ssh_authorized_keys" => p.ssh_authorized_keys = keys(ctx, &key, v),
            "write_files" => p.write_files = write_files(ctx, v),
            "runcmd" | "bootcmd" => {
                let c = commands(ctx, &key, v);
                if key == "runcmd" {
                    p.runcmd = c
                } else {
                    p.bootcmd = c
                }
            }
            "password" => {
                p.password = opt(ctx, &key, v, "a string", text).map(|o| o.map(Secret::new));
            }
            "chpasswd" => p.chpasswd = chpasswd(ctx, v),
            "ssh_pwauth" => p.ssh_pwauth = ssh_pwauth(ctx, v),
            "vendor_data" => p.vendor_data_enabled = vendor_data(ctx, v),
            "ssh_deletekeys" => p.ssh_deletekeys = opt(ctx, &key, v, "a boolean", boolish),
            "ssh_genkeytypes" => p.ssh_genkeytypes = genkeytypes(ctx, v),
            "disable_root" | "disable_root_opts" => disable_root(ctx, &key, v, &mut p),
            "manage_etc_hosts" => p.manage_etc_hosts = manage_etc_hosts(ctx, v),
            "preserve_hostname" => p.preserve_hostname = opt(ctx, &key, v, "a boolean", boolish),
            "timezone" => p.timezone = checked_text(ctx, &key, v, grammar::tz_name),
            "locale" => p.locale = checked_text(ctx, &key, v, grammar::locale_name),
            "ntp" => p.ntp = ntp(ctx, v),
            "ca_certs" | "ca-certs" => p.ca_certs = ca_certs(ctx, &key, v),
            "mounts" => p.mounts = mounts(ctx, v),
            "mount_default_fields" => p.mount_default_fields = mount_default_fields(ctx, v),
            "growpart" => p.growpart = growpart(ctx, v),
            "resize_rootfs" => p.resize_rootfs = resize_rootfs(ctx, v),
            _ => ctx.unsupported(key),
        }
    }
    flush_unsupported(ctx);
    p
}

fn flush_unsupported(ctx: &mut Ctx) {
    if ctx.unsupported.is_empty() {
        return;
    }
    let mut keys = std::mem::take(&mut ctx.unsupported);
    crate::sort::sort(&mut keys);
    keys.dedup();
    let n = keys.len();
    ctx.warn(
        &keys.join(", "),
        format!(
            "{n} unsupported cloud-config key{}; ignored",
            if n == 1 { "" } else { "s" }
        ),
    );
}

// ---- scalars ----

/// A scalar as text: strings as they are, numbers in decimal (YAML types `1234` as a number),
/// UTF-8 binary as text. Booleans, null and containers are not text.
fn text(n: &Node) -> Option<String> {
    match n {
        Node::Str(s) => Some(s.clone()),
        Node::Int(i) => Some(i.to_string()),
        Node::Float(f) if f.is_finite() => Some(f.to_string()),
        Node::Bytes(b) => String::from_utf8(b.clone()).ok(),
        _ => None,
    }
}

/// A boolean as cloud-init's `translate_bool` reads it: YAML booleans, 0/1, and the strings
/// true/false, yes/no, on/off, y/n, 1/0 in any case.
fn boolish(n: &Node) -> Option<bool> {
    match n {
        Node::Bool(b) => Some(*b),
        Node::Int(0) => Some(false),
        Node::Int(1) => Some(true),
        Node::Str(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "y" | "1" => Some(true),
            "false" | "no" | "off" | "n" | "0" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// A key whose null means "given, empty": `Some(None)`; a value of the right type: `Some(Some)`;
/// a wrong type: a warning and `None` (as if absent).
fn opt<T>(
    ctx: &mut Ctx,
    field: &str,
    v: Node,
    expected: &str,
    f: impl Fn(&Node) -> Option<T>,
) -> Option<Option<T>> {
    if v == Node::Null {
        return Some(None);
    }
    match f(&v) {
        Some(t) => Some(Some(t)),
        None => {
            ctx.wrong(field, expected, &v);
            None
        }
    }
}

/// A boolean field of an entry: absent keeps `default`; a wrong type warns and keeps it too.
fn entry_bool(ctx: &mut Ctx, field: &str, v: &Node, default: bool) -> bool {
    if *v == Node::Null {
        return default;
    }
    boolish(v).unwrap_or_else(|| {
        ctx.wrong(field, "a boolean", v);
        default
    })
}

/// A text field of an entry; null is `None`, a wrong type warns and is `None`.
fn entry_text(ctx: &mut Ctx, field: &str, v: &Node) -> Option<String> {
    if *v == Node::Null {
        return None;
    }
    let t = text(v);
    if t.is_none() {
        ctx.wrong(field, "a string", v);
    }
    t
}

/// A list of strings: each non-text item is a warning and skipped.
fn text_items(ctx: &mut Ctx, field: &str, items: Vec<Node>) -> Vec<String> {
    let mut out = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        match text(&item) {
            Some(s) => out.push(s),
            None => ctx.wrong(&format!("{field}[{i}]"), "a string", &item),
        }
    }
    out
}

/// `"a, b"` into `["a", "b"]`.
fn comma_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(str::to_string)
        .collect()
}

/// SSH keys: a list of strings, or one string of lines (blank and `#` lines skipped).
fn key_list(ctx: &mut Ctx, field: &str, v: Node) -> Option<Vec<String>> {
    match v {
        Node::Null => Some(Vec::new()),
        Node::Seq(items) => Some(
            text_items(ctx, field, items)
                .into_iter()
                .map(|k| k.trim().to_string())
                .filter(|k| !k.is_empty())
                .collect(),
        ),
        Node::Str(s) => Some(
            s.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_string)
                .collect(),
        ),
        other => {
            ctx.wrong(field, "a list of keys", &other);
            None
        }
    }
}

fn keys(ctx: &mut Ctx, field: &str, v: Node) -> Option<Vec<String>> {
    key_list(ctx, field, v)
}

// ---- users ----

/// A name `useradd` could take and that cannot break a passwd line or a path.
fn sane_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 256
        && !s.starts_with('-')
        && s.chars()
            .all(|c| !c.is_control() && !c.is_whitespace() && !matches!(c, ':' | ',' | '/'))
}

/// A short, escaped rendering of a name for messages.
fn shown(s: &str) -> String {
    let t: String = s.chars().take(40).collect();
    format!("{t:?}")
}

/// `user`: a string renames the default user; a mapping sets its fields (`name` optional).
fn default_user(ctx: &mut Ctx, v: Node) -> Option<Option<CcUser>> {
    match v {
        Node::Null => Some(None),
        Node::Map(m) => user_from_map(ctx, "user", m, None, true).map(Some),
        other => match text(&other) {
            Some(name) if sane_name(name.trim()) => Some(Some(CcUser {
                name: name.trim().to_string(),
                default_user: true,
                ..CcUser::default()
            })),
            Some(name) => {
                ctx.warn(
                    "user",
                    format!("{} is not a valid user name; ignored", shown(&name)),
                );
                None
            }
            None => {
                ctx.wrong("user", "a user name or a mapping", &other);
                None
            }
        },
    }
}

fn user_by_name(ctx: &mut Ctx, field: &str, name: &str, out: &mut Vec<CcUser>) {
    if name == CcUser::DEFAULT_NAME {
        out.push(CcUser::default_marker());
    } else if sane_name(name) {
        out.push(CcUser::named(name));
    } else {
        ctx.warn(
            field,
            format!("{} is not a valid user name; ignored", shown(name)),
        );
    }
}

/// `users`: a list (of names, `"a, b"` strings and mappings), a comma-separated string, or a
/// mapping of name to settings. Deduplicated by name, the first entry kept.
fn users(ctx: &mut Ctx, v: Node) -> Option<Vec<CcUser>> {
    let mut out = Vec::new();
    match v {
        Node::Null => {}
        Node::Str(s) => {
            for n in comma_list(&s) {
                user_by_name(ctx, "users", &n, &mut out);
            }
        }
        Node::Seq(items) => {
            for (i, item) in items.into_iter().enumerate() {
                let field = format!("users[{i}]");
                match item {
                    Node::Map(m) => {
                        if let Some(u) = user_from_map(ctx, &field, m, None, false) {
                            out.push(u);
                        }
                    }
                    Node::Str(s) => {
                        for n in comma_list(&s) {
                            user_by_name(ctx, &field, &n, &mut out);
                        }
                    }
                    other => ctx.wrong(&field, "a user name or a mapping", &other),
                }
            }
        }
        Node::Map(m) => {
            for (name, cfg) in m {
                let field = format!("users.{name}");
                match cfg {
                    Node::Map(c) => {
                        if let Some(u) = user_from_map(ctx, &field, c, Some(name), false) {
                            out.push(u);
                        }
                    }
                    Node::Null | Node::Bool(true) => user_by_name(ctx, &field, &name, &mut out),
                    Node::Bool(false) => {}
                    other => ctx.wrong(&field, "a mapping of user settings", &other),
                }
            }
        }
        other => {
            ctx.wrong("users", "a list of users", &other);
            return None;
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut deduped = Vec::with_capacity(out.len());
    for u in out {
        if seen.insert(u.name.clone()) {
            deduped.push(u);
        } else {
            ctx.warn(
                "users",
                format!(
                    "user {} listed more than once; the first entry is used",
                    shown(&u.name)
                ),
            );
        }
    }
    Some(deduped)
}

/// One user mapping. `name` comes from the mapping unless given (dict form); for `user` it is
/// optional (the default user keeps its distribution name, `default`).
fn user_from_map(
    ctx: &mut Ctx,
    path: &str,
    mut m: super::yaml::NodeMap,
    name: Option<String>,
    is_default_user_key: bool,
) -> Option<CcUser> {
    let name = match name {
        Some(n) => Some(n),
        None => match m.remove("name") {
            None | Some(Node::Null) => None,
            Some(n) => match text(&n) {
                Some(s) => Some(s.trim().to_string()),
                None => {
                    ctx.wrong(&format!("{path}.name"), "a string", &n);
                    return None;
                }
            },
        },
    };
    let mut u = CcUser::default();
    match name {
        None if is_default_user_key => {
            u.name = CcUser::DEFAULT_NAME.to_string();
            u.default_user = true;
        }
        None => {
            ctx.warn(&format!("{path}.name"), "missing; user ignored");
            return None;
        }
        Some(n) if n == CcUser::DEFAULT_NAME => {
            u.name = n;
            u.default_user = true;
        }
        Some(n) if sane_name(&n) => {
            u.name = n;
            u.default_user = is_default_user_key;
        }
        Some(n) => {
            ctx.warn(
                &format!("{path}.name"),
                format!("{} is not a valid user name; user ignored", shown(&n)),
            );
            return None;
        }
    }
    for (k, v) in m {
        let field = format!("{path}.{k}");
        match k.as_str() {
            "gecos" => u.gecos = entry_text(ctx, &field, &v),
            "shell" => u.shell = entry_text(ctx, &field, &v),
            "primary_group" => u.primary_group = entry_text(ctx, &field, &v),
            "homedir" => u.homedir = entry_text(ctx, &field, &v),
            "passwd" => u.passwd = entry_text(ctx, &field, &v),
            "hashed_passwd" => u.hashed_passwd = entry_text(ctx, &field, &v),
            "plain_text_passwd" => {
                u.plain_text_passwd = entry_text(ctx, &field, &v).map(Secret::new)
            }
            "lock_passwd" | "lock-passwd" => {
                u.lock_passwd = entry_bool(ctx, &field, &v, u.lock_passwd)
            }
            "system" => u.system = entry_bool(ctx, &field, &v, false),
            "no_create_home" => u.no_create_home = entry_bool(ctx, &field, &v, false),
            "groups" => {
                u.groups = match v {
                    Node::Null => Vec::new(),
                    Node::Seq(items) => text_items(ctx, &field, items)
                        .iter()
                        .flat_map(|g| comma_list(g))
                        .collect(),
                    other => match text(&other) {
                        Some(s) => comma_list(&s),
                        None => {
                            ctx.wrong(&field, "a string or a list of groups", &other);
                            Vec::new()
                        }
                    },
                }
            }
            "sudo" => {
                u.sudo = match v {
                    Node::Null | Node::Bool(false) => Vec::new(),
                    Node::Seq(items) => text_items(ctx, &field, items),
                    Node::Str(s) if s.trim().is_empty() => Vec::new(),
                    Node::Str(s) => vec![s],
                    other => {
                        ctx.wrong(&field, "a sudoers rule (string or list) or false", &other);
                        Vec::new()
                    }
                }
            }
            "ssh_authorized_keys" => {
                u.ssh_authorized_keys = key_list(ctx, &field, v).unwrap_or_default()
            }
            "uid" => {
                u.uid = match &v {
                    Node::Null => None,
                    Node::Int(i) => u32::try_from(*i).ok(),
                    Node::Str(s) => s.trim().parse::<u32>().ok(),
                    _ => None,
                };
                if u.uid.is_none() && v != Node::Null {
                    ctx.warn(
                        &field,
                        format!(
                            "expected a user id (0 to {}), found {}; ignored",
                            u32::MAX,
                            v.kind()
                        ),
                    );
                }
            }
            _ => ctx.unsupported(field),
        }
    }
    Some(u)
}

// ---- write_files ----

fn write_files(ctx: &mut Ctx, v: Node) -> Option<Vec<WriteFile>> {
    match v {
        Node::Null => Some(Vec::new()),
        Node::Seq(items) => {
            // Sized once (the parse's node cap bounds it): no doubling slack per entry.
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.into_iter().enumerate() {
                let field = format!("write_files[{i}]");
                match item {
                    Node::Map(m) => {
                        if let Some(f) = write_file(ctx, &field, m) {
                            out.push(f);
                        }
                    }
                    other => ctx.wrong(&field, "a mapping", &other),
                }
            }
            Some(out)
        }
        other => {
            ctx.wrong("write_files", "a list of files", &other);
            None
        }
    }
}

/// What `encoding` asks for, as cloud-init's `canonicalize_extraction` reads it.
#[derive(Clone, Copy, PartialEq)]
enum Encoding {
    Plain,
    Base64,
    Gzip,
    GzipBase64,
}

fn write_file(ctx: &mut Ctx, path_field: &str, mut m: super::yaml::NodeMap) -> Option<WriteFile> {
    let field = |k: &str| format!("{path_field}.{k}");
    let path = match m.remove("path") {
        None | Some(Node::Null) => {
            ctx.warn(&field("path"), "missing; file ignored");
            return None;
        }
        Some(p) => match text(&p) {
            Some(s) if !s.trim().is_empty() && !s.contains('\0') => s,
            Some(_) => {
                ctx.warn(&field("path"), "empty or contains NUL; file ignored");
                return None;
            }
            None => {
                ctx.wrong(&field("path"), "a string; file", &p);
                return None;
            }
        },
    };
    let encoding = match m.remove("encoding") {
        None | Some(Node::Null) => Encoding::Plain,
        Some(e) => match text(&e) {
            Some(s) => match s.trim().to_ascii_lowercase().as_str() {
                "" | "text/plain" => Encoding::Plain,
                "b64" | "base64" => Encoding::Base64,
                "gz" | "gzip" => Encoding::Gzip,
                "gz+b64" | "gz+base64" | "gzip+b64" | "gzip+base64" => Encoding::GzipBase64,
                _ => {
                    let shown: String = s.chars().take(40).collect();
                    ctx.warn(
                        &field("encoding"),
                        format!(
                            "unknown encoding {shown:?}; content written as plain text, as cloud-init does"
                        ),
                    );
                    Encoding::Plain
                }
            },
            None => {
                ctx.wrong(&field("encoding"), "a string", &e);
                Encoding::Plain
            }
        },
    };
    let carved = match m.get("content") {
        Some(Node::Str(s)) => ctx.take_carved(s),
        _ => None,
    };
    let content: Bytes = match carved {
        Some((doc, lit, slot)) => {
            m.remove("content");
            carved_content(ctx, &field("content"), &doc, &lit, encoding, Some(slot))?
        }
        None => {
            // Moved out of the node, never copied: the content may be tens of MiB.
            let raw: Vec<u8> = match m.remove("content") {
                None | Some(Node::Null) => Vec::new(),
                Some(Node::Bytes(b)) => b,
                Some(Node::Str(s)) => s.into_bytes(),
                Some(c) => match text(&c) {
                    Some(s) => s.into_bytes(),
                    None => {
                        ctx.wrong(&field("content"), "a string or binary; file", &c);
                        return None;
                    }
                },
            };
            decode_content(ctx, &field("content"), raw, encoding)?.into()
        }
    };
    let mut f = WriteFile {
        path,
        content,
        permissions: None,
        owner: None,
        append: false,
        defer: false,
    };
    for (k, v) in m {
        let fld = field(&k);
        match k.as_str() {
            "permissions" => f.permissions = permissions(ctx, &fld, &v),
            "owner" => f.owner = entry_text(ctx, &fld, &v),
            "append" => f.append = entry_bool(ctx, &fld, &v, false),
            "defer" => f.defer = entry_bool(ctx, &fld, &v, false),
            _ => ctx.unsupported(fld),
        }
    }
    Some(f)
}

/// A content carved out of the parse (a large literal block of a cloud-config kept on the
/// device): decoded while streamed, never held ([`carve::content`]), when that gives exactly
/// what [`decode_content`] would; else (a rare base64 form, bad gzip, `gz` without base64, a
/// read error) the value is read back and decoded in memory, with that path's warnings.
fn carved_content(
    ctx: &mut Ctx,
    field: &str,
    doc: &Bytes,
    lit: &Literal,
    enc: Encoding,
    slot: Option<usize>,
) -> Option<Bytes> {
    if lit.len > ctx.max_file_bytes {
        ctx.warn(
            field,
            format!(
                "too large ({} bytes > limit {}); file ignored",
                lit.len, ctx.max_file_bytes
            ),
        );
        return None;
    }
    let decode = match enc {
        Encoding::Plain => Some(Decode::Plain),
        Encoding::Base64 => Some(Decode::Base64),
        Encoding::GzipBase64 => Some(Decode::GzipBase64),
        Encoding::Gzip => None,
    };
    if let Some(d) = decode {
        // `gunzip`'s limit: the cap and what the parse's budget has left.
        let gz = d == Decode::GzipBase64;
        let max = if gz {
            ctx.max_file_bytes.min(ctx.budget.left)
        } else {
            ctx.max_file_bytes
        };
        let slot = slot.and_then(|i| Some((ctx.members.as_ref()?, i)));
        match carve::content(doc, lit, d, field, max, slot) {
            Ok(b) => {
                if gz {
                    ctx.budget.charge(b.len());
                }
                return Some(b);
            }
            // A bomb: `gunzip`'s warning and charge at once, never read back and decompressed
            // again in memory (a flood of bombs would cost two decompressions each, and the
            // value held whole).
            Err(e) if gz && e.get_ref().is_some_and(|i| i.is::<TooLarge>()) => {
                let e = ctx.budget.refuse(max, ctx.max_file_bytes);
                ctx.warn(field, format!("gzip: {e}; file ignored"));
                return None;
            }
            Err(e) => tracing::debug!("{field}: not streamed ({e}); decoded in memory"),
        }
    }
    match carve::value(doc, lit) {
        Ok(v) => decode_content(ctx, field, v.into_bytes(), enc).map(Bytes::from),
        Err(e) => {
            ctx.warn(field, format!("{e}; file ignored"));
            None
        }
    }
}

fn decode_content(ctx: &mut Ctx, field: &str, raw: Vec<u8>, enc: Encoding) -> Option<Vec<u8>> {
    if raw.len() > ctx.max_file_bytes {
        ctx.warn(
            field,
            format!(
                "too large ({} bytes > limit {}); file ignored",
                raw.len(),
                ctx.max_file_bytes
            ),
        );
        return None;
    }
    let b64 = |ctx: &mut Ctx, raw: Vec<u8>| -> Option<Vec<u8>> {
        let blank = raw.iter().all(u8::is_ascii_whitespace);
        // Decoded from the content itself, not from a copy of it.
        let decoded = decode_base64_owned(raw);
        if decoded.is_none() && !blank {
            ctx.warn(field, "not valid base64; file ignored");
            return None;
        }
        Some(decoded.unwrap_or_default())
    };
    let gz = |ctx: &mut Ctx, raw: Vec<u8>| -> Option<Vec<u8>> {
        let cap = ctx.max_file_bytes;
        match gunzip(&raw, cap, ctx.budget) {
            Ok(v) => Some(v),
            Err(e) => {
                ctx.warn(field, format!("gzip: {e}; file ignored"));
                None
            }
        }
    };
    match enc {
        Encoding::Plain => Some(raw),
        Encoding::Base64 => b64(ctx, raw),
        Encoding::Gzip => gz(ctx, raw),
        Encoding::GzipBase64 => {
            let inner = b64(ctx, raw)?;
            gz(ctx, inner)
        }
    }
}

/// Mode bits: an integer (YAML `0644` is already 420) or an octal string (`'0644'`, `'644'`,
/// `'0o644'`), at most 0o7777.
fn permissions(ctx: &mut Ctx, field: &str, v: &Node) -> Option<u32> {
    let mode = match v {
        Node::Null => return None,
        Node::Int(i) => {
            let m = u32::try_from(*i).ok().filter(|m| *m <= 0o7777);
            if let Some(m) = m {
                // `644` without the leading zero is decimal to YAML (mode 01204): cloud-init
                // uses it as is, and so does primer, but say so.
                let digits = i.to_string();
                if m > 0o777
                    && digits.len() <= 4
                    && digits.bytes().all(|d| (b'0'..=b'7').contains(&d))
                {
                    ctx.warn(
                        field,
                        format!(
                            "{digits} is a decimal number (mode 0{m:o}), as cloud-init reads it; write 0{digits} or '0{digits}' for octal"
                        ),
                    );
                }
            }
            m
        }
        Node::Str(s) => {
            let t = s.trim();
            let t = t
                .strip_prefix("0o")
                .or_else(|| t.strip_prefix("0O"))
                .unwrap_or(t);
            if !t.is_empty() && t.len() <= 8 && t.bytes().all(|d| (b'0'..=b'7').contains(&d)) {
                u32::from_str_radix(t, 8).ok().filter(|m| *m <= 0o7777)
            } else {
                None
            }
        }
        _ => None,
    };
    if mode.is_none() {
        ctx.warn(
            field,
            format!(
                "expected an octal mode up to 07777 (0644 or '0644'), found {}; default mode used",
                v.kind()
            ),
        );
    }
    mode
}

// ---- runcmd / bootcmd ----

fn commands(ctx: &mut Ctx, key: &str, v: Node) -> Option<Vec<Command>> {
    match v {
        Node::Null => Some(Vec::new()),
        // cloud-init's shellify takes a string as a whole script.
        Node::Str(s) => Some(vec![Command::Shell(s)]),
        Node::Seq(items) => {
            let mut out = Vec::new();
            for (i, item) in items.into_iter().enumerate() {
                let field = format!("{key}[{i}]");
                match item {
                    Node::Str(s) => out.push(Command::Shell(s)),
                    Node::Seq(args) => {
                        let mut argv = Vec::with_capacity(args.len());
                        let mut ok = true;
                        for (j, a) in args.iter().enumerate() {
                            match text(a) {
                                Some(s) => argv.push(s),
                                None => {
                                    ctx.wrong(&format!("{field}[{j}]"), "a string; command", a);
                                    ok = false;
                                    break;
                                }
                            }
                        }
                        if ok && argv.is_empty() {
                            ctx.warn(&field, "empty command; ignored");
                        } else if ok {
                            out.push(Command::Argv(argv));
                        }
                    }
                    other => ctx.wrong(&field, "a string or a list of strings", &other),
                }
            }
            Some(out)
        }
        other => {
            ctx.wrong(key, "a list of commands", &other);
            None
        }
    }
}

// ---- passwords ----

/// A crypt(3) hash as cloud-init recognises one: the one recogniser every password source
/// shares (`model::grammar::crypt_hash`).
pub(crate) fn is_crypt_hash(s: &str) -> bool {
    crate::model::grammar::crypt_hash(s)
}

/// A password as the `list:` form (and an untyped `users:` entry) gives it.
fn classify_password(p: String) -> PasswordValue {
    if p == "R" || p == "RANDOM" {
        PasswordValue::Random
    } else if is_crypt_hash(&p) {
        PasswordValue::Hash(p)
    } else {
        PasswordValue::Plain(Secret::new(p))
    }
}

fn push_password(
    ctx: &mut Ctx,
    field: &str,
    user: String,
    p: PasswordValue,
    out: &mut Vec<(String, PasswordValue)>,
) {
    if p == PasswordValue::Random {
        ctx.warn(
            field,
            format!(
                "RANDOM password for {} is not supported (primer does not generate passwords); entry skipped",
                shown(&user)
            ),
        );
        return;
    }
    out.push((user, p));
}

fn chpasswd(ctx: &mut Ctx, v: Node) -> Option<PartialChpasswd> {
    let m = match v {
        Node::Null => {
            return Some(PartialChpasswd {
                users: Some(Vec::new()),
                expire: Some(None),
            })
        }
        Node::Map(m) => m,
        other => {
            ctx.wrong("chpasswd", "a mapping", &other);
            return None;
        }
    };
    let mut out = PartialChpasswd::default();
    let mut entries: Option<Vec<(String, PasswordValue)>> = None;
    let mut list_entries = Vec::new();
    let mut user_entries = Vec::new();
    for (k, v) in m {
        let field = format!("chpasswd.{k}");
        match k.as_str() {
            "expire" => {
                out.expire = opt(ctx, &field, v, "a boolean", boolish);
            }
            "list" => {
                let lines: Vec<(String, String)> = match v {
                    Node::Null => Vec::new(),
                    Node::Str(s) => s
                        .lines()
                        .enumerate()
                        .filter(|(_, l)| !l.trim().is_empty())
                        .map(|(i, l)| (format!("{field} line {}", i + 1), l.to_string()))
                        .collect(),
                    Node::Seq(items) => {
                        let mut lines = Vec::new();
                        for (i, item) in items.into_iter().enumerate() {
                            match text(&item) {
                                Some(s) => lines.push((format!("{field}[{i}]"), s)),
                                None => ctx.wrong(
                                    &format!("{field}[{i}]"),
                                    "a user:password string",
                                    &item,
                                ),
                            }
                        }
                        lines
                    }
                    other => {
                        ctx.wrong(&field, "a list or a string of user:password lines", &other);
                        continue;
                    }
                };
                for (at, line) in lines {
                    // cloud-init splits at the first colon; never show the line (a password).
                    match line.split_once(':') {
                        Some((u, p)) if !u.trim().is_empty() => {
                            let u = u.trim().to_string();
                            push_password(
                                ctx,
                                &at,
                                u,
                                classify_password(p.to_string()),
                                &mut list_entries,
                            );
                        }
                        _ => ctx.warn(&at, "expected user:password; entry ignored"),
                    }
                }
                entries.get_or_insert_with(Vec::new);
            }
            "users" => {
                match v {
                    Node::Null => {}
                    Node::Seq(items) => {
                        for (i, item) in items.into_iter().enumerate() {
                            let at = format!("{field}[{i}]");
                            match item {
                                Node::Map(e) => chpasswd_user(ctx, &at, e, &mut user_entries),
                                other => ctx.wrong(&at, "a mapping {name, password, type}", &other),
                            }
                        }
                    }
                    other => {
                        ctx.wrong(&field, "a list of {name, password, type}", &other);
                        continue;
                    }
                }
                entries.get_or_insert_with(Vec::new);
            }
            _ => ctx.unsupported(field),
        }
    }
    if let Some(e) = entries.as_mut() {
        e.append(&mut list_entries);
        e.append(&mut user_entries);
    }
    out.users = entries;
    Some(out)
}

fn chpasswd_user(
    ctx: &mut Ctx,
    at: &str,
    mut e: super::yaml::NodeMap,
    out: &mut Vec<(String, PasswordValue)>,
) {
    let name = e.remove("name").as_ref().and_then(text);
    let password = e.remove("password");
    let kind = e.remove("type");
    for k in e.into_keys() {
        ctx.unsupported(format!("{at}.{k}"));
    }
    let Some(name) = name.map(|n| n.trim().to_string()).filter(|n| !n.is_empty()) else {
        ctx.warn(
            &format!("{at}.name"),
            "missing or not a string; entry ignored",
        );
        return;
    };
    let kind = match &kind {
        None | Some(Node::Null) => None,
        Some(k) => match text(k).map(|s| s.trim().to_ascii_lowercase()) {
            Some(s) if matches!(s.as_str(), "text" | "hash" | "random") => Some(s),
            _ => {
                ctx.warn(
                    &format!("{at}.type"),
                    "expected text, hash or RANDOM; entry ignored",
                );
                return;
            }
        },
    };
    let password = match &password {
        None | Some(Node::Null) => None,
        Some(p) => match text(p) {
            Some(s) => Some(s),
            None => {
                ctx.wrong(&format!("{at}.password"), "a string; entry", p);
                return;
            }
        },
    };
    let value = match (kind.as_deref(), password) {
        (Some("random"), _) => PasswordValue::Random,
        (Some("hash"), Some(p)) => PasswordValue::Hash(p),
        (Some("text"), Some(p)) => PasswordValue::Plain(Secret::new(p)),
        (None, Some(p)) => classify_password(p),
        (_, None) => {
            ctx.warn(
                &format!("{at}.password"),
                "missing (and type is not RANDOM); entry ignored",
            );
            return;
        }
        (Some(_), Some(p)) => classify_password(p),
    };
    push_password(ctx, at, name, value, out);
}

fn ssh_pwauth(ctx: &mut Ctx, v: Node) -> Option<Option<bool>> {
    if let Node::Str(s) = &v {
        if s.trim().eq_ignore_ascii_case("unchanged") {
            return Some(None);
        }
    }
    opt(ctx, "ssh_pwauth", v, "a boolean or \"unchanged\"", boolish)
}

/// Host key types `ssh_genkeytypes` may name (cloud-init's list; DSA is gone from OpenSSH).
pub(crate) const HOST_KEY_TYPES: [&str; 3] = ["rsa", "ecdsa", "ed25519"];

/// `ssh_genkeytypes`: a list (or one string) of host key types. An item that is not one of
/// [`HOST_KEY_TYPES`] is a warning (naming its position, not its text) and left out; a type
/// given twice is kept once, so the result holds at most three entries whatever the input.
fn genkeytypes(ctx: &mut Ctx, v: Node) -> Option<Option<Vec<String>>> {
    let items = match v {
        Node::Null => return Some(None),
        Node::Seq(items) => items,
        s @ Node::Str(_) => vec![s],
        other => {
            ctx.wrong("ssh_genkeytypes", "a list of key types", &other);
            return None;
        }
    };
    let mut out: Vec<String> = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        let field = format!("ssh_genkeytypes[{i}]");
        let Some(t) = text(&item) else {
            ctx.wrong(&field, "a key type", &item);
            continue;
        };
        let t = t.trim().to_ascii_lowercase();
        match HOST_KEY_TYPES.iter().find(|k| **k == t) {
            Some(k) if !out.iter().any(|o| o == k) => out.push(k.to_string()),
            Some(_) => {}
            None => ctx.warn(
                &field,
                format!(
                    "not a host key type primer generates ({}); ignored",
                    HOST_KEY_TYPES.join(", ")
                ),
            ),
        }
    }
    Some(Some(out))
}

fn vendor_data(ctx: &mut Ctx, v: Node) -> Option<Option<bool>> {
    match v {
        Node::Null => Some(None),
        Node::Map(m) => {
            let mut enabled = None;
            for (k, v) in m {
                let field = format!("vendor_data.{k}");
                if k == "enabled" {
                    enabled = opt(ctx, &field, v, "a boolean", boolish).flatten();
                } else {
                    ctx.unsupported(field);
                }
            }
            Some(enabled)
        }
        other => {
            ctx.wrong("vendor_data", "a mapping", &other);
            None
        }
    }
}

/// Longest `disable_root_opts` kept (cloud-init's default is ~150 bytes); a longer one is a
/// warning and ignored, so the planner never walks a huge options list.
const MAX_DISABLE_ROOT_OPTS: usize = 1024;

/// `disable_root` (a boolean) and `disable_root_opts` (a string, bounded; its grammar is
/// checked where it is used, as an `authorized_keys` options list).
fn disable_root(ctx: &mut Ctx, key: &str, v: Node, p: &mut Partial) {
    if key == "disable_root" {
        p.disable_root = opt(ctx, key, v, "a boolean", boolish);
        return;
    }
    p.disable_root_opts = match opt(ctx, key, v, "a string", text) {
        Some(Some(s)) if s.len() > MAX_DISABLE_ROOT_OPTS => {
            ctx.warn(
                key,
                format!(
                    "{} bytes long (at most {MAX_DISABLE_ROOT_OPTS}); ignored",
                    s.len()
                ),
            );
            None
        }
        other => other,
    };
}

// ---- system keys (README "Cloud-config keys") ----

/// Most `ntp` servers (and, separately, pools) kept.
pub(crate) const MAX_NTP_SERVERS: usize = 16;
use crate::model::userdata::MAX_CA_CERTS;
/// Most `mounts` entries kept.
pub(crate) const MAX_MOUNTS: usize = 64;
/// `mount_default_fields` when the drive gives none (cloud-init's, without its unit ordering).
const MOUNT_DEFAULTS: [&str; 6] = ["", "", "auto", "defaults,nofail", "0", "2"];

/// A text key checked against its grammar; a value that does not fit is one warning naming the
/// key and the rule it breaks (never the value), and the key is ignored.
fn checked_text(
    ctx: &mut Ctx,
    key: &str,
    v: Node,
    check: fn(&str) -> Result<(), grammar::GrammarError>,
) -> Option<Option<String>> {
    let t = opt(ctx, key, v, "a string", text)?;
    let Some(t) = t else { return Some(None) };
    let t = t.trim().to_string();
    match check(&t) {
        Ok(()) => Some(Some(t)),
        Err(e) => {
            ctx.warn(key, format!("value {e}; ignored"));
            None
        }
    }
}

/// `manage_etc_hosts`: `true`/`template`, `localhost`, `false` (YAML booleans and the usual
/// boolean strings too).
fn manage_etc_hosts(ctx: &mut Ctx, v: Node) -> Option<Option<ManageEtcHosts>> {
    if let Node::Str(s) = &v {
        match s.trim().to_ascii_lowercase().as_str() {
            "template" => return Some(Some(ManageEtcHosts::Template)),
            "localhost" => return Some(Some(ManageEtcHosts::Localhost)),
            _ => {}
        }
    }
    opt(
        ctx,
        "manage_etc_hosts",
        v,
        "true, false, \"template\" or \"localhost\"",
        |n| {
            boolish(n).map(|b| {
                if b {
                    ManageEtcHosts::Template
                } else {
                    ManageEtcHosts::Off
                }
            })
        },
    )
}

/// A list of time servers (or one string), each checked (`grammar::ntp_server`), each once,
/// at most [`MAX_NTP_SERVERS`].
fn ntp_list(ctx: &mut Ctx, field: &str, v: Node) -> Vec<String> {
    let items = match v {
        Node::Null => return Vec::new(),
        Node::Seq(items) => items,
        s @ Node::Str(_) => vec![s],
        other => {
            ctx.wrong(field, "a list of servers", &other);
            return Vec::new();
        }
    };
    let total = items.len();
    let mut out: Vec<String> = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        if out.len() == MAX_NTP_SERVERS {
            ctx.warn(
                field,
                format!("{total} entries; only the first {MAX_NTP_SERVERS} usable ones are kept"),
            );
            break;
        }
        let at = format!("{field}[{i}]");
        let Some(t) = text(&item) else {
            ctx.wrong(&at, "a host name or address", &item);
            continue;
        };
        let t = t.trim().to_string();
        match grammar::ntp_server(&t) {
            Ok(()) if !out.contains(&t) => out.push(t),
            Ok(()) => {}
            Err(e) => ctx.warn(&at, format!("not an IP address or DNS name: {e}; ignored")),
        }
    }
    out
}

/// `ntp: {enabled, servers, pools}`. `ntp_client: auto` (or the client primer would pick
/// anyway) is accepted; every other sub-key is unsupported.
fn ntp(ctx: &mut Ctx, v: Node) -> Option<Option<Ntp>> {
    let m = match v {
        Node::Null => return Some(None),
        Node::Map(m) => m,
        other => {
            ctx.wrong("ntp", "a mapping", &other);
            return None;
        }
    };
    let mut out = Ntp {
        enabled: true,
        ..Ntp::default()
    };
    for (k, v) in m {
        let field = format!("ntp.{k}");
        match k.as_str() {
            "enabled" => out.enabled = entry_bool(ctx, &field, &v, true),
            "servers" => out.servers = ntp_list(ctx, &field, v),
            "pools" => out.pools = ntp_list(ctx, &field, v),
            "ntp_client"
                if text(&v).is_some_and(|c| {
                    matches!(c.trim(), "auto" | "systemd-timesyncd" | "chrony")
                }) => {}
            _ => ctx.unsupported(field),
        }
    }
    Some(Some(out))
}

/// `ca_certs: {trusted: [PEM...], remove_defaults}`: each entry checked as PEM certificate
/// blocks (`grammar::pem_certificates`), at most [`MAX_CA_CERTS`]. `remove_defaults: true` is
/// refused with a warning: emptying the system store from a drive is not something primer does.
fn ca_certs(ctx: &mut Ctx, key: &str, v: Node) -> Option<Option<CaCerts>> {
    let m = match v {
        Node::Null => return Some(None),
        Node::Map(m) => m,
        other => {
            ctx.wrong(key, "a mapping", &other);
            return None;
        }
    };
    let mut out = CaCerts::default();
    for (k, v) in m {
        let field = format!("{key}.{k}");
        match k.as_str() {
            "trusted" => {
                let items = match v {
                    Node::Null => Vec::new(),
                    Node::Seq(items) => items,
                    s @ Node::Str(_) => vec![s],
                    other => {
                        ctx.wrong(&field, "a list of PEM certificates", &other);
                        continue;
                    }
                };
                let total = items.len();
                for (i, item) in items.into_iter().enumerate() {
                    if out.trusted.len() == MAX_CA_CERTS {
                        ctx.warn(
                            &field,
                            format!("{total} entries; only the first {MAX_CA_CERTS} are kept"),
                        );
                        break;
                    }
                    let at = format!("{field}[{i}]");
                    let Some(t) = text(&item) else {
                        ctx.wrong(&at, "a PEM certificate", &item);
                        continue;
                    };
                    match grammar::pem_certificates(&t) {
                        Ok(_) => {
                            let mut t = t.trim().replace("\r\n", "\n");
                            t.push('\n');
                            out.trusted.push(t);
                        }
                        Err(e) => {
                            ctx.warn(&at, format!("not PEM certificate blocks: {e}; ignored"))
                        }
                    }
                }
            }
            "remove_defaults" | "remove-defaults" => {
                if entry_bool(ctx, &field, &v, false) {
                    ctx.warn(
                        &field,
                        "not supported (primer never empties the system's certificate store); \
                         the default certificates stay trusted",
                    );
                }
            }
            _ => ctx.unsupported(field),
        }
    }
    Some(Some(out))
}

/// One field of a `mounts` entry or of `mount_default_fields`: text or null.
fn mount_field(ctx: &mut Ctx, at: &str, n: &Node) -> Result<Option<String>, ()> {
    if *n == Node::Null {
        return Ok(None);
    }
    let Some(t) = text(n) else {
        ctx.wrong(at, "a string", n);
        return Err(());
    };
    let t = t.trim().to_string();
    match grammar::fstab_field(&t) {
        Ok(()) => Ok(Some(t)),
        Err(e) => {
            ctx.warn(at, format!("not an fstab field: {e}; entry ignored"));
            Err(())
        }
    }
}

/// `mounts`: a list of entries, each a list of 1 to 6 fields (device, mount point, type,
/// options, dump, pass), at most [`MAX_MOUNTS`] entries.
#[allow(clippy::type_complexity)]
fn mounts(ctx: &mut Ctx, v: Node) -> Option<Option<Vec<Vec<Option<String>>>>> {
    let items = match v {
        Node::Null => return Some(None),
        Node::Seq(items) => items,
        other => {
            ctx.wrong("mounts", "a list of entries", &other);
            return None;
        }
    };
    let total = items.len();
    let mut out = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        if out.len() == MAX_MOUNTS {
            ctx.warn(
                "mounts",
                format!("{total} entries; only the first {MAX_MOUNTS} usable ones are kept"),
            );
            break;
        }
        let at = format!("mounts[{i}]");
        let fields = match item {
            Node::Seq(f) if (1..=6).contains(&f.len()) => f,
            other => {
                ctx.wrong(&at, "a list of 1 to 6 fields; entry", &other);
                continue;
            }
        };
        let mut entry = Vec::with_capacity(6);
        let mut ok = true;
        for (j, f) in fields.iter().enumerate() {
            match mount_field(ctx, &format!("{at}[{j}]"), f) {
                Ok(v) => entry.push(v),
                Err(()) => {
                    ok = false;
                    break;
                }
            }
        }
        if !ok {
            continue;
        }
        let Some(Some(spec)) = entry.first().cloned() else {
            ctx.warn(&at, "no device; entry ignored");
            continue;
        };
        if matches!(entry.get(1), None | Some(None)) {
            ctx.warn(
                &at,
                "no mount point (removing an fstab entry is not supported); entry ignored",
            );
            continue;
        }
        if let Some(Some(dir)) = entry.get(1) {
            if dir != "none" && !dir.starts_with('/') {
                ctx.warn(
                    &format!("{at}[1]"),
                    "mount point is not an absolute path (nor none); entry ignored",
                );
                continue;
            }
        }
        if let Some(j) = (4..entry.len()).find(|&j| {
            entry[j]
                .as_deref()
                .is_some_and(|f| f.len() > 3 || !f.bytes().all(|b| b.is_ascii_digit()))
        }) {
            ctx.warn(
                &format!("{at}[{j}]"),
                "dump and pass are small numbers; entry ignored",
            );
            continue;
        }
        if spec.starts_with("ephemeral") || spec == "swap" {
            ctx.warn(
                &format!("{at}[0]"),
                "cloud-init's ephemeral and swap device aliases are not supported; entry ignored",
            );
            continue;
        }
        // cloud-init's short device names: `sdb` is /dev/sdb.
        if !spec.contains(['/', '=', ':']) {
            entry[0] = Some(format!("/dev/{spec}"));
        }
        out.push(entry);
    }
    Some(Some(out))
}

/// `mount_default_fields`: up to six fields (null: the built-in default for that field).
fn mount_default_fields(ctx: &mut Ctx, v: Node) -> Option<Option<Vec<Option<String>>>> {
    let items = match v {
        Node::Null => return Some(None),
        Node::Seq(items) if items.len() <= 6 => items,
        other => {
            ctx.wrong("mount_default_fields", "a list of at most 6 fields", &other);
            return None;
        }
    };
    let mut out = Vec::with_capacity(6);
    for (j, f) in items.iter().enumerate() {
        match mount_field(ctx, &format!("mount_default_fields[{j}]"), f) {
            Ok(v) => out.push(v),
            Err(()) => return None,
        }
    }
    Some(Some(out))
}

/// The entries with every missing field from `defaults`, then from [`MOUNT_DEFAULTS`].
fn complete_mounts(
    entries: Vec<Vec<Option<String>>>,
    defaults: Option<Vec<Option<String>>>,
) -> Vec<MountEntry> {
    let defaults = defaults.unwrap_or_default();
    entries
        .into_iter()
        .map(|e| {
            let f = |j: usize| -> String {
                e.get(j)
                    .cloned()
                    .flatten()
                    .or_else(|| defaults.get(j).cloned().flatten())
                    .unwrap_or_else(|| MOUNT_DEFAULTS[j].to_string())
            };
            MountEntry {
                spec: f(0),
                file: f(1),
                vfstype: f(2),
                mntops: f(3),
                freq: f(4),
                passno: f(5),
            }
        })
        .collect()
}

/// `growpart: {mode, devices}`: `mode: off` (or `false`) turns growth off; `auto`, `growpart`,
/// `gpart` (or `true`) leave it to primer's configuration. `devices` other than `/` are
/// warned about: primer grows only the root file system.
fn growpart(ctx: &mut Ctx, v: Node) -> Option<Option<bool>> {
    let m = match v {
        Node::Null => return Some(None),
        Node::Map(m) => m,
        other => {
            ctx.wrong("growpart", "a mapping", &other);
            return None;
        }
    };
    let mut out = None;
    for (k, v) in m {
        let field = format!("growpart.{k}");
        match k.as_str() {
            "mode" => {
                let mode = match &v {
                    Node::Str(s) => match s.trim().to_ascii_lowercase().as_str() {
                        "off" => Some(false),
                        "auto" | "growpart" | "gpart" => Some(true),
                        _ => boolish(&v),
                    },
                    n => boolish(n),
                };
                match mode {
                    Some(b) => out = Some(b),
                    None => ctx.wrong(&field, "auto, growpart, gpart or off", &v),
                }
            }
            "devices" => {
                let items = match v {
                    Node::Seq(items) => items,
                    Node::Null => Vec::new(),
                    other => {
                        ctx.wrong(&field, "a list of mount points", &other);
                        continue;
                    }
                };
                if items
                    .iter()
                    .any(|d| text(d).as_deref().map(str::trim) != Some("/"))
                {
                    ctx.warn(
                        &field,
                        "primer grows only the root file system (\"/\"); other devices ignored",
                    );
                }
            }
            _ => ctx.unsupported(field),
        }
    }
    Some(out)
}

/// `resize_rootfs`: `false` turns growth off; `true` and `noblock` leave it on.
fn resize_rootfs(ctx: &mut Ctx, v: Node) -> Option<Option<bool>> {
    if let Node::Str(s) = &v {
        if s.trim().eq_ignore_ascii_case("noblock") {
            return Some(Some(true));
        }
    }
    opt(ctx, "resize_rootfs", v, "a boolean or \"noblock\"", boolish)
}

#[cfg(test)]
mod tests {
    use super::super::yaml;
    use super::*;

    fn part(text: &str) -> (Partial, Report) {
        let limits = yaml::YamlLimits {
            max_bytes: 1 << 20,
            max_depth: 32,
            max_nodes: 100_000,
            max_aliases: 100,
            max_replayed_events: 10_000,
        };
        let node = yaml::parse(text, &limits).unwrap().node;
        let mut report = Report::default();
        let mut budget = Budget::new(1 << 20);
        let mut ctx = Ctx::new(
            "user-data",
            String::new(),
            &mut report,
            &mut budget,
            1 << 20,
        );
        let p = convert(node, &mut ctx);
        (p, report)
    }

    /// A device in memory counting the bytes read from it.
    struct Counting(Vec<u8>, std::sync::atomic::AtomicUsize);

    impl crate::model::bytes::ReadAt for Counting {
        fn read_exact_at(&self, at: u64, buf: &mut [u8]) -> std::io::Result<()> {
            let src = self
                .0
                .get(at as usize..at as usize + buf.len())
                .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::UnexpectedEof))?;
            buf.copy_from_slice(src);
            self.1
                .fetch_add(buf.len(), std::sync::atomic::Ordering::Relaxed);
            Ok(())
        }
    }

    /// A gzip bomb in a carved `gz+b64` content: `gunzip`'s warning and charge, the content
    /// decompressed once (its range read once), never read back and decompressed in memory.
    #[test]
    fn a_carved_gzip_bomb_is_refused_and_charged_once() {
        use base64::Engine;
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(&vec![0u8; 4 << 20]).unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode(e.finish().unwrap());
        let mut doc = String::from(
            "#cloud-config\nwrite_files:\n  - path: /srv/a\n    encoding: gz+b64\n    content: |\n",
        );
        for l in b64.as_bytes().chunks(76) {
            doc.push_str("      ");
            doc.push_str(std::str::from_utf8(l).unwrap());
            doc.push('\n');
        }
        let mut c = carve::Carver::new(0, 1 << 20, carve::token_base(&[1; 32]));
        c.feed(doc.as_bytes());
        let carved = c.finish().unwrap();
        // The block (the short values before it are carved too at a threshold of 0).
        let lit = &carved.values.last().unwrap().1;
        let dev = std::sync::Arc::new(Counting(
            doc.clone().into_bytes(),
            std::sync::atomic::AtomicUsize::new(0),
        ));
        let len = doc.len();
        let blob =
            Bytes::on_device(dev.clone(), vec![(0, len as u64)], len, "dev: ud".into()).unwrap();
        let before = dev.1.load(std::sync::atomic::Ordering::Relaxed);
        let mut report = Report::default();
        let mut budget = Budget::new(8 << 20);
        let mut ctx = Ctx::new(
            "user-data",
            String::new(),
            &mut report,
            &mut budget,
            1 << 20,
        );
        let field = "write_files[0].content";
        let got = carved_content(&mut ctx, field, &blob, lit, Encoding::GzipBase64, None);
        assert!(got.is_none());
        let read = dev.1.load(std::sync::atomic::Ordering::Relaxed) - before;
        assert!(
            read <= lit.range.len(),
            "{read} bytes read for a {:?} range",
            lit.range
        );
        // Charged as `gunzip` charges a refused decompression: its limit and one byte.
        assert_eq!(budget.left, (8 << 20) - (1 << 20) - 1);
        assert_eq!(report.warnings.len(), 1, "{report:?}");
        let w = &report.warnings[0];
        assert_eq!(w.field, field);
        assert_eq!(
            w.message,
            "gzip: decompresses to more than 1048576 bytes (limit); ignored as a possible gzip \
             bomb; file ignored"
        );
    }

    #[test]
    fn crypt_hashes() {
        for h in [
            "$6$rounds=4096$salt$hash",
            "$5$6LDowW6p$.RyFu8lVH7Cw3AB",
            "$1$a$b",
            "$y$j9T$salt$hash",
            "$2a$10$x",
        ] {
            assert!(is_crypt_hash(h), "{h}");
        }
        for p in ["$6$", "$6$$", "$6$a$", "$9$a$b", "plain", "", "$", "$6$ab"] {
            assert!(!is_crypt_hash(p), "{p}");
        }
    }

    #[test]
    fn booleans_and_null_replacement() {
        let (p, r) = part("ssh_pwauth: 'yes'\nprefer_fqdn_over_hostname: off\nhostname:\n");
        assert_eq!(p.ssh_pwauth, Some(Some(true)));
        assert_eq!(p.prefer_fqdn_over_hostname, Some(Some(false)));
        assert_eq!(p.hostname, Some(None));
        assert!(r.warnings.is_empty(), "{r:?}");
        let (p, _) = part("ssh_pwauth: Unchanged\n");
        assert_eq!(p.ssh_pwauth, Some(None));
        let (p, r) = part("ssh_pwauth: maybe\n");
        assert_eq!(p.ssh_pwauth, None);
        assert_eq!(r.warnings[0].field, "ssh_pwauth");
    }

    #[test]
    fn merge_rules() {
        let (a, _) =
            part("hostname: a\nruncmd: [x, y]\nchpasswd: {expire: false, list: 'root:p1'}\n");
        let (b, _) = part("runcmd: [z]\nchpasswd: {users: [{name: bob, password: p2}]}\n");
        let mut same = a.clone();
        same.overlay(b.clone());
        let c = same.finish();
        assert_eq!(c.hostname.as_deref(), Some("a"));
        assert_eq!(c.runcmd, vec![Command::Shell("z".into())]);
        // Within one origin chpasswd is replaced whole: expire gone, only bob.
        assert_eq!(c.chpasswd.expire, None);
        assert_eq!(c.chpasswd.users.len(), 1);
        // User over vendor: chpasswd merges its sub-keys.
        let c = Partial::user_over_vendor(a, b).finish();
        assert_eq!(c.chpasswd.expire, Some(false));
        assert_eq!(c.chpasswd.users[0].0, "bob");
        assert_eq!(c.runcmd, vec![Command::Shell("z".into())]);
        assert_eq!(c.hostname.as_deref(), Some("a"));
    }

    #[test]
    fn host_key_settings() {
        let (p, r) = part("ssh_deletekeys: false\nssh_genkeytypes: [ED25519, rsa, rsa]\n");
        assert!(r.warnings.is_empty(), "{r:?}");
        let c = p.finish();
        assert_eq!(c.ssh_deletekeys, Some(false));
        assert_eq!(
            c.ssh_genkeytypes,
            Some(vec!["ed25519".into(), "rsa".into()])
        );
        // Unknown types and non-text items: one warning each, by position, never the value.
        let (p, r) = part("ssh_genkeytypes: [dsa, \"e\\x1b[2J\", [x], ecdsa]\nssh_deletekeys: 1\n");
        let c = p.finish();
        assert_eq!(c.ssh_genkeytypes, Some(vec!["ecdsa".into()]));
        assert_eq!(c.ssh_deletekeys, Some(true));
        let fields: Vec<&str> = r.warnings.iter().map(|w| w.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "ssh_genkeytypes[0]",
                "ssh_genkeytypes[1]",
                "ssh_genkeytypes[2]"
            ]
        );
        assert!(
            r.warnings.iter().all(|w| !w.message.contains('\x1b')),
            "{r:?}"
        );
        // One string is a list of one; a mapping is the wrong type; null is given-but-empty.
        assert_eq!(
            part("ssh_genkeytypes: rsa\n").0.finish().ssh_genkeytypes,
            Some(vec!["rsa".into()])
        );
        let (p, r) = part("ssh_genkeytypes: {a: 1}\nssh_deletekeys: maybe\n");
        assert_eq!(p.ssh_genkeytypes, None);
        assert_eq!(p.ssh_deletekeys, None);
        assert_eq!(r.warnings.len(), 2, "{r:?}");
        assert_eq!(part("ssh_genkeytypes:\n").0.ssh_genkeytypes, Some(None));
    }
    #[test]
    fn system_keys() {
        let (p, r) = part(
            "manage_etc_hosts: localhost\npreserve_hostname: 'yes'\ntimezone: ' Europe/Berlin '\n\
             locale: sr_RS.UTF-8@latin\nntp: {servers: [a.example, '192.0.2.1', a.example], pools: 'p.example', ntp_client: auto}\n\
             mounts: [[sdb, /data], [/dev/vdc, /x, ext4]]\nmount_default_fields: [~, ~, xfs, defaults, '0', '0']\n\
             growpart: {mode: auto}\nresize_rootfs: false\n",
        );
        assert!(r.warnings.is_empty(), "{r:?}");
        let c = p.finish();
        assert_eq!(c.manage_etc_hosts, Some(ManageEtcHosts::Localhost));
        assert_eq!(c.preserve_hostname, Some(true));
        assert_eq!(c.timezone.as_deref(), Some("Europe/Berlin"));
        assert_eq!(c.locale.as_deref(), Some("sr_RS.UTF-8@latin"));
        let ntp = c.ntp.unwrap();
        assert!(ntp.enabled);
        assert_eq!(ntp.servers, ["a.example", "192.0.2.1"]);
        assert_eq!(ntp.pools, ["p.example"]);
        let m = c.mounts.unwrap();
        assert_eq!(
            (
                m[0].spec.as_str(),
                m[0].vfstype.as_str(),
                m[0].passno.as_str()
            ),
            ("/dev/sdb", "xfs", "0")
        );
        assert_eq!(m[1].vfstype, "ext4");
        // resize_rootfs: false wins over growpart's auto.
        assert_eq!(c.grow_root, Some(false));
        assert_eq!(
            part("manage_etc_hosts: true\n").0.finish().manage_etc_hosts,
            Some(ManageEtcHosts::Template)
        );
        assert_eq!(
            part("manage_etc_hosts: false\n")
                .0
                .finish()
                .manage_etc_hosts,
            Some(ManageEtcHosts::Off)
        );
        assert_eq!(
            part("growpart: {mode: 'off'}\n").0.finish().grow_root,
            Some(false)
        );
        assert_eq!(
            part("resize_rootfs: noblock\n").0.finish().grow_root,
            Some(true)
        );
        assert_eq!(part("hostname: x\n").0.finish().grow_root, None);
        // Wrong values: one warning each naming the key; the key is ignored.
        let (p, r) = part(
            "timezone: ../etc/shadow\nlocale: 'en US'\nmanage_etc_hosts: sometimes\n\
             ntp: [a]\nca_certs: {trusted: [x], bogus: 1}\ngrowpart: {mode: fast}\n",
        );
        let c = p.finish();
        assert_eq!(
            (c.timezone, c.locale, c.manage_etc_hosts),
            (None, None, None)
        );
        assert_eq!(c.ca_certs.map(|x| x.trusted.len()), Some(0));
        let fields: Vec<&str> = r.warnings.iter().map(|w| w.field.as_str()).collect();
        for f in [
            "timezone",
            "locale",
            "manage_etc_hosts",
            "ntp",
            "ca_certs.trusted[0]",
            "growpart.mode",
            "ca_certs.bogus",
        ] {
            assert!(fields.contains(&f), "{f}: {fields:?}");
        }
    }
}
