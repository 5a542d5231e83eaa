//! Accounts: plans new users and groups, group memberships and password changes as edits of the
//! texts of `/etc/passwd`, `/etc/shadow`, `/etc/group` and `/etc/gshadow`, with `useradd`'s
//! rules (name syntax, id ranges from `login.defs`, user-private groups); also hashes passwords
//! with SHA-512 crypt. Pure: no I/O, no clock, no randomness (the salt and the day number come
//! in as arguments). Every existing line is kept byte for byte: lines are only appended, or one
//! field of one line is replaced. Never panics on odd input, never renames, moves or renumbers an
//! existing account, and never puts a password or a hash into a warning or `Debug` output.

use std::collections::BTreeSet;
use std::fmt;

use sha_crypt::{Sha256Params, Sha512Params, ROUNDS_MAX, ROUNDS_MIN};

/// One account file to write.
#[derive(Clone, PartialEq, Eq)]
pub struct AccountWrite {
    /// Relative to the root, e.g. `etc/shadow`.
    pub path: String,
    /// SHA-256 (hex) of the content the plan was made from; `None`: the file was absent.
    pub expect_sha256: Option<String>,
    pub content: Vec<u8>,
    /// Mode and owner (the existing file's: shadow and gshadow are 0640 root:shadow on Debian).
    pub meta: crate::facts::Meta,
}

/// Shadow lines hold password hashes: Debug shows sizes, never content.
impl std::fmt::Debug for AccountWrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountWrite")
            .field("path", &self.path)
            .field("expect_sha256", &self.expect_sha256)
            .field("content", &format_args!("<{} bytes>", self.content.len()))
            .field("meta", &self.meta)
            .finish()
    }
}

// ---------------------------------------------------------------------------------------------
// login.defs and /etc/default/useradd
// ---------------------------------------------------------------------------------------------

/// The `login.defs(5)` settings (plus `/etc/default/useradd`'s) that decide what a new account
/// looks like. `Default` is Debian bookworm as shipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginDefs {
    pub uid_min: u32,
    pub uid_max: u32,
    pub gid_min: u32,
    pub gid_max: u32,
    pub sys_uid_min: u32,
    pub sys_uid_max: u32,
    pub sys_gid_min: u32,
    pub sys_gid_max: u32,
    /// Mode of a new home directory (`HOME_MODE`, else `0777 & !UMASK`).
    pub home_mode: u32,
    /// A new user gets a group of its own name (`USERGROUPS_ENAB`).
    pub usergroups_enab: bool,
    /// Shadow aging fields of a new user; `None` leaves the field empty (useradd's `-1`).
    pub pass_min_days: Option<u32>,
    pub pass_max_days: Option<u32>,
    pub pass_warn_age: Option<u32>,
    /// Login shell of a new user that names none (`/etc/default/useradd` `SHELL`).
    pub default_shell: String,
    /// Parent of a new user's default home (`/etc/default/useradd` `HOME`).
    pub home_base: String,
    /// Primary group of a new user when `usergroups_enab` is off (`/etc/default/useradd` `GROUP`).
    pub default_group: u32,
    /// Subordinate ids of a new user (`SUB_UID_MIN`, `SUB_UID_MAX`, `SUB_UID_COUNT`; a count of 0
    /// turns them off), and the same for groups (`SUB_GID_*`).
    pub sub_uids: SubIds,
    pub sub_gids: SubIds,
}

/// Where useradd takes a new user's subordinate id range from, and its size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubIds {
    pub min: u64,
    pub max: u64,
    pub count: u64,
}

/// shadow's defaults (`SUB_UID_MIN 100000`, `SUB_UID_MAX 600100000`, `SUB_UID_COUNT 65536`).
const SUB_IDS: SubIds = SubIds {
    min: 100_000,
    max: 600_100_000,
    count: 65_536,
};

/// Debian's values. `HOME_MODE` is commented out in bookworm's `login.defs`, so useradd derives
/// it from `UMASK 022`: 0755 (Debian's `adduser` uses 0700, but that is adduser's own setting,
/// not login.defs'). The shell is `/bin/sh` as in bookworm's `/etc/default/useradd`, which is
/// also what cloud-init gives a user without `shell:` on Debian (it leaves the choice to
/// useradd); Debian's cloud images name `/bin/bash` for their default user explicitly.
impl Default for LoginDefs {
    fn default() -> Self {
        LoginDefs {
            uid_min: 1000,
            uid_max: 60000,
            gid_min: 1000,
            gid_max: 60000,
            sys_uid_min: 100,
            sys_uid_max: 999,
            sys_gid_min: 100,
            sys_gid_max: 999,
            home_mode: 0o755,
            usergroups_enab: true,
            pass_min_days: Some(0),
            pass_max_days: Some(99999),
            pass_warn_age: Some(7),
            default_shell: "/bin/sh".into(),
            home_base: "/home".into(),
            default_group: 100,
            sub_uids: SUB_IDS,
            sub_gids: SUB_IDS,
        }
    }
}

/// `KEY VALUE` pairs of a `login.defs`-style file: `#` comments, the value's surrounding double
/// quotes stripped; a later definition wins, as in shadow's `getdef`.
fn defs_value<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let mut found = None;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        let mut it = line.split_whitespace();
        if it.next() == Some(key) {
            if let Some(v) = it.next() {
                found = Some(v.trim_matches('"'));
            }
        }
    }
    found
}

/// A number as C's `strtol(s, 0)` reads it: `0x` hex, leading `0` octal, else decimal.
fn parse_c_number(s: &str) -> Option<i64> {
    let (neg, s) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s),
    };
    let v = if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        i64::from_str_radix(h, 16).ok()?
    } else if s.len() > 1 && s.starts_with('0') {
        i64::from_str_radix(&s[1..], 8).ok()?
    } else {
        s.parse().ok()?
    };
    Some(if neg { -v } else { v })
}

/// Parses `login.defs(5)` text; a missing or unreadable key keeps Debian's default (see
/// `LoginDefs::default`), except the `SYS_*_MAX` ones, which follow `*_MIN - 1` as in shadow.
pub fn parse_login_defs(text: &str) -> LoginDefs {
    let d = LoginDefs::default();
    let id = |key: &str, default: u32| -> u32 {
        defs_value(text, key)
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(default)
    };
    let uid_min = id("UID_MIN", d.uid_min);
    let gid_min = id("GID_MIN", d.gid_min);
    let umask = defs_value(text, "UMASK")
        .and_then(parse_c_number)
        .and_then(|v| u32::try_from(v).ok())
        .unwrap_or(0o022);
    let home_mode = defs_value(text, "HOME_MODE")
        .and_then(parse_c_number)
        .and_then(|v| u32::try_from(v).ok())
        .unwrap_or(0o777 & !umask)
        & 0o7777;
    // Aging: a negative value is useradd's "unset" (empty field); garbage keeps the default.
    let aging = |key: &str, default: Option<u32>| -> Option<u32> {
        match defs_value(text, key).and_then(parse_c_number) {
            Some(v) if v < 0 => None,
            Some(v) => u32::try_from(v).ok().or(default),
            None => default,
        }
    };
    LoginDefs {
        uid_min,
        uid_max: id("UID_MAX", d.uid_max),
        gid_min,
        gid_max: id("GID_MAX", d.gid_max),
        sys_uid_min: id("SYS_UID_MIN", d.sys_uid_min),
        sys_uid_max: id("SYS_UID_MAX", uid_min.saturating_sub(1)),
        sys_gid_min: id("SYS_GID_MIN", d.sys_gid_min),
        sys_gid_max: id("SYS_GID_MAX", gid_min.saturating_sub(1)),
        home_mode,
        usergroups_enab: defs_value(text, "USERGROUPS_ENAB")
            .map_or(d.usergroups_enab, |v| v.eq_ignore_ascii_case("yes")),
        pass_min_days: aging("PASS_MIN_DAYS", d.pass_min_days),
        pass_max_days: aging("PASS_MAX_DAYS", d.pass_max_days),
        pass_warn_age: aging("PASS_WARN_AGE", d.pass_warn_age),
        sub_uids: sub_ids(text, "UID"),
        sub_gids: sub_ids(text, "GID"),
        ..d
    }
}

/// `SUB_{kind}_MIN`, `_MAX` and `_COUNT` (shadow's `getdef_ulong`: a value that is not a
/// number keeps the default).
fn sub_ids(text: &str, kind: &str) -> SubIds {
    let get = |key: &str, default: u64| -> u64 {
        defs_value(text, &format!("SUB_{kind}_{key}"))
            .and_then(parse_c_number)
            .and_then(|v| u64::try_from(v).ok())
            .unwrap_or(default)
    };
    SubIds {
        min: get("MIN", SUB_IDS.min),
        max: get("MAX", SUB_IDS.max),
        count: get("COUNT", SUB_IDS.count),
    }
}

/// Reads `/etc/default/useradd` (`SHELL=`, `HOME=`, `GROUP=`) into `defs`; other keys and bad
/// values are ignored. A numeric `GROUP` only: a group name would need the group file.
pub fn parse_useradd_defaults(text: &str, mut defs: LoginDefs) -> LoginDefs {
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let v = v.trim().trim_matches('"');
        match k.trim() {
            "SHELL" if v.starts_with('/') && valid_path(v) => defs.default_shell = v.to_string(),
            "HOME" if v.starts_with('/') && valid_path(v) => defs.home_base = v.to_string(),
            "GROUP" => {
                if let Ok(g) = v.parse() {
                    defs.default_group = g;
                }
            }
            _ => {}
        }
    }
    defs
}

// ---------------------------------------------------------------------------------------------
// Inputs and outputs
// ---------------------------------------------------------------------------------------------

/// One account the drive asks for (cloud-init's `users:` entry, already typed).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct UserSpec {
    pub name: String,
    pub gecos: Option<String>,
    /// Primary group by name; created when missing. `None`: a user-private group (or
    /// `default_group` when `USERGROUPS_ENAB` is off).
    pub primary_group: Option<String>,
    /// Supplementary groups; missing ones are created (system gid range, like role groups
    /// packages create).
    pub groups: Vec<String>,
    pub shell: Option<String>,
    pub home: Option<String>,
    pub system: bool,
    pub uid: Option<u32>,
    /// Lock the password (`!` prefix), as `passwd -l`.
    pub lock_password: bool,
    /// A crypt hash (`$6$...`), never a plain password.
    pub password_hash: Option<String>,
    /// The home directory should be created (done by apply; reported in `CreatedUser`).
    pub create_home: bool,
}

impl fmt::Debug for UserSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserSpec")
            .field("name", &self.name)
            .field("gecos", &self.gecos)
            .field("primary_group", &self.primary_group)
            .field("groups", &self.groups)
            .field("shell", &self.shell)
            .field("home", &self.home)
            .field("system", &self.system)
            .field("uid", &self.uid)
            .field("lock_password", &self.lock_password)
            .field(
                "password_hash",
                &self.password_hash.as_ref().map(|_| "<redacted>"),
            )
            .field("create_home", &self.create_home)
            .finish()
    }
}

/// The account files as read from the target. `None`: the file does not exist. The texts must
/// be the files' exact bytes: a caller that cannot decode a file as UTF-8 must not plan (a lossy
/// decoding would rewrite its bytes; `plan_accounts` refuses text holding U+FFFD).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct AccountFiles {
    pub passwd: String,
    pub shadow: Option<String>,
    pub group: String,
    pub gshadow: Option<String>,
    /// `/etc/subuid` and `/etc/subgid` (subordinate ids for user namespaces): a new user gets a
    /// range in each file that exists, as from useradd.
    pub subuid: Option<String>,
    pub subgid: Option<String>,
}

impl fmt::Debug for AccountFiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccountFiles")
            .field("passwd", &self.passwd)
            .field("shadow", &redacted(&self.shadow))
            .field("group", &self.group)
            .field("gshadow", &redacted(&self.gshadow))
            .field("subuid", &self.subuid)
            .field("subgid", &self.subgid)
            .finish()
    }
}

fn redacted(s: &Option<String>) -> Option<String> {
    s.as_ref().map(|s| format!("<{} bytes redacted>", s.len()))
}

/// A user `plan_accounts` adds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
    pub shell: String,
    /// The spec asked for the home directory (mode `LoginDefs::home_mode`) to be created.
    pub create_home: bool,
}

/// A group `plan_accounts` adds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedGroup {
    pub name: String,
    pub gid: u32,
}

/// New contents of the account files; a field is `Some` only when that file changes.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct AccountsEdit {
    pub passwd: Option<String>,
    pub shadow: Option<String>,
    pub group: Option<String>,
    pub gshadow: Option<String>,
    pub subuid: Option<String>,
    pub subgid: Option<String>,
    pub created: Vec<CreatedUser>,
    pub created_groups: Vec<CreatedGroup>,
    /// Users whose password field changes (set or locked), new users excluded.
    pub passwords_changed: Vec<String>,
    /// Refused or ignored requests, one line each (no hashes).
    pub warnings: Vec<String>,
}

impl AccountsEdit {
    /// Whether any file changes.
    pub fn changes(&self) -> bool {
        self.passwd.is_some()
            || self.shadow.is_some()
            || self.group.is_some()
            || self.gshadow.is_some()
            || self.subuid.is_some()
            || self.subgid.is_some()
    }
}

impl fmt::Debug for AccountsEdit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccountsEdit")
            .field("passwd", &self.passwd)
            .field("shadow", &redacted(&self.shadow))
            .field("group", &self.group)
            .field("gshadow", &redacted(&self.gshadow))
            .field("subuid", &self.subuid)
            .field("subgid", &self.subgid)
            .field("created", &self.created)
            .field("created_groups", &self.created_groups)
            .field("passwords_changed", &self.passwords_changed)
            .field("warnings", &self.warnings)
            .finish()
    }
}

// ---------------------------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------------------------

/// Longest user or group name (useradd's `LOGIN_NAME_MAX`-bound default on Debian).
pub const MAX_NAME_LEN: usize = 32;

/// Checks a new user or group name against useradd's rule `[a-z_][a-z0-9_-]*[$]?`, at most
/// 32 characters (Debian's relaxed `--badname` rules are deliberately not followed: a name
/// from a drive must be portable and unambiguous).
pub fn check_name(name: &str) -> Result<(), &'static str> {
    let b = name.as_bytes();
    let Some((&first, rest)) = b.split_first() else {
        return Err("empty");
    };
    if b.len() > MAX_NAME_LEN {
        return Err("longer than 32 characters");
    }
    if !(first.is_ascii_lowercase() || first == b'_') {
        return Err("must start with a lowercase letter or '_'");
    }
    let body = rest.strip_suffix(b"$").unwrap_or(rest);
    if !body
        .iter()
        .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_' || c == b'-')
    {
        return Err("only lowercase letters, digits, '_' and '-' (and a final '$') are allowed");
    }
    Ok(())
}

/// A field value may not break the line format: no `:`, no control characters (newline) nor
/// line separators (`model::grammar::account_field`, which the planner checks first, naming the
/// source; this is the editor's own last line of defence).
fn valid_field(s: &str) -> bool {
    crate::model::grammar::account_field(s).is_ok()
}

/// A home or shell: absolute, one field, and clean (no `.` or `..` component), so what lands in
/// /etc/passwd is the directory the checks saw.
fn valid_path(s: &str) -> bool {
    s.starts_with('/') && valid_field(s) && !s.split('/').any(|c| c == "." || c == "..")
}

/// A name looked up in the group file (existing groups may predate useradd's rules): it only
/// must not break the group line format.
fn valid_group_ref(s: &str) -> bool {
    !s.is_empty()
        && !s
            .chars()
            .any(|c| c == ':' || c == ',' || c.is_whitespace() || c.is_control())
}

/// Why a crypt hash cannot go into a shadow line, if it cannot. Empty is refused: it would mean
/// "no password needed".
fn hash_problem(h: &str) -> Option<&'static str> {
    if h.is_empty() {
        Some("it is empty (that would allow login without a password)")
    } else if !valid_field(h) {
        Some("it contains ':' or a control character")
    } else {
        None
    }
}

// ---------------------------------------------------------------------------------------------
// Line tables: the files as lines, edited in place
// ---------------------------------------------------------------------------------------------

/// A colon-separated file as its lines, kept verbatim; edits replace one field of one line or
/// append a line.
/// Claims `ids.count` ids in `ids.min..=ids.max` that no range of `table` (of any owner)
/// overlaps and returns their start, as useradd does (shadow's `find_free_range`): the lowest
/// hole large enough between the ranges sorted by start. Like useradd, which writes the file in
/// the order it searched, the lines are then sorted by start, count and owner, lines that are not
/// ranges last; the caller appends the new range. `None`: no hole, the table unchanged.
/// Empty ranges claim nothing. O(n log n).
fn claim_sub_range(table: &mut Table, ids: SubIds) -> Option<u64> {
    let SubIds { min, max, count } = ids;
    if count == 0 || max < min || count - 1 > max - min {
        return None;
    }
    // A range line: start, count, owner (the sort key).
    type Range = (u64, u64, String);
    let range = |l: &str| -> Option<Range> {
        let mut f = split_cr(l).0.split(':');
        let owner = f.next().filter(|o| !o.is_empty())?;
        let start: u64 = f.next()?.parse().ok()?;
        let n: u64 = f.next()?.parse().ok()?;
        f.next().is_none().then(|| (start, n, owner.to_string()))
    };
    let mut keyed: Vec<(Option<Range>, String)> =
        table.lines.iter().map(|l| (range(l), l.clone())).collect();
    // Ranges first (by start, count, owner), then the other lines in their order.
    crate::sort::sort_by(&mut keyed, |(a, _), (b, _)| match (a, b) {
        (Some(a), Some(b)) => a.cmp(b),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => std::cmp::Ordering::Equal,
    });
    let mut low = min;
    let mut found = None;
    for (first, n, _) in keyed.iter().filter_map(|(k, _)| k.as_ref()) {
        if *n == 0 {
            continue;
        }
        let high = (*first).min(max);
        if high > low && high - low >= count {
            found = Some(low);
            break;
        }
        // The range's last id, saturating: a range past u64 claims the rest.
        low = low.max(first.saturating_add(*n - 1).saturating_add(1));
        if low > max {
            return None;
        }
    }
    let start = found.or((max - low >= count - 1).then_some(low))?;
    table.lines = keyed.into_iter().map(|(_, l)| l).collect();
    Some(start)
}

struct Table {
    lines: Vec<String>,
    /// The text ended with a newline (an empty text counts as ending with one).
    final_newline: bool,
}

impl Table {
    fn parse(text: &str) -> Table {
        let mut lines: Vec<String> = text.split('\n').map(str::to_string).collect();
        // `split` yields one empty piece after a final newline (or for an empty text).
        let final_newline = lines.last().is_some_and(|l| l.is_empty());
        if final_newline {
            lines.pop();
        }
        Table {
            lines,
            final_newline,
        }
    }

    fn render(&self) -> String {
        let mut s = self.lines.join("\n");
        if self.final_newline && !self.lines.is_empty() {
            s.push('\n');
        }
        s
    }

    /// Index of the first entry named `name` (what `getpwnam` and friends return).
    fn find(&self, name: &str) -> Option<usize> {
        self.lines
            .iter()
            .position(|l| l.split_once(':').is_some_and(|(n, _)| n == name))
    }

    /// Field `idx` of line `i` (a trailing `\r` of a CRLF line is not part of the last field).
    fn field(&self, i: usize, idx: usize) -> Option<&str> {
        let (body, _) = split_cr(self.lines.get(i)?);
        body.split(':').nth(idx)
    }

    /// Replaces field `idx` of line `i`; false when the line has no such field.
    fn set_field(&mut self, i: usize, idx: usize, value: &str) -> bool {
        let Some(line) = self.lines.get_mut(i) else {
            return false;
        };
        let (body, cr) = split_cr(line);
        let mut fields: Vec<&str> = body.split(':').collect();
        let Some(f) = fields.get_mut(idx) else {
            return false;
        };
        *f = value;
        let new = format!("{}{cr}", fields.join(":"));
        *line = new;
        true
    }

    fn push(&mut self, line: String) {
        // A last line without its newline gets one: required to append after it.
        self.final_newline = true;
        self.lines.push(line);
    }

    /// Numeric values of field `idx` over all lines (used ids).
    fn ids(&self, idx: usize) -> BTreeSet<u32> {
        crate::sort::set((0..self.lines.len()).filter_map(|i| self.field(i, idx)?.parse().ok()))
    }
}

fn split_cr(line: &str) -> (&str, &str) {
    match line.strip_suffix('\r') {
        Some(b) => (b, "\r"),
        None => (line, ""),
    }
}

/// Adds `name` to a comma-separated member list, unless it is there.
fn with_member(list: &str, name: &str) -> Option<String> {
    if list.split(',').any(|m| m == name) {
        return None;
    }
    Some(if list.is_empty() || list.ends_with(',') {
        format!("{list}{name}")
    } else {
        format!("{list},{name}")
    })
}

// ---------------------------------------------------------------------------------------------
// Id allocation
// ---------------------------------------------------------------------------------------------

/// Ids never handed out: `(uid_t)-1` and the 16-bit `-1`, both error values to some callers.
fn reserved_id(id: u32) -> bool {
    id == u32::MAX || id == u32::from(u16::MAX)
}

/// Allocates an id in `[min, max]` as shadow's `find_new_uid`/`find_new_gid` do: above every
/// used id of the range (below, for system accounts), so an id of a deleted account is not
/// handed out again while the range has room (a new account would inherit the old one's files);
/// only a full range falls back to the lowest (highest, for system accounts) free id.
fn allocate(used: &BTreeSet<u32>, min: u32, max: u32, system: bool) -> Option<u32> {
    // 0 is root's: never handed out, whatever login.defs says (shadow does the same).
    let min = min.max(1);
    if min > max {
        return None;
    }
    let free = |id: &u32| !used.contains(id) && !reserved_id(*id);
    let in_range = used.range(min..=max);
    if system {
        let start = match in_range.clone().next() {
            Some(&lowest) if lowest > min => lowest - 1,
            _ => max,
        };
        (min..=start)
            .rev()
            .find(free)
            .or_else(|| (min..=max).rev().find(free))
    } else {
        let start = match in_range.clone().next_back() {
            Some(&highest) if highest < max => highest + 1,
            _ => min,
        };
        (start..=max).find(free).or_else(|| (min..=max).find(free))
    }
}

// ---------------------------------------------------------------------------------------------
// Planning
// ---------------------------------------------------------------------------------------------

/// A change of one account's password field.
#[derive(Clone, PartialEq, Eq)]
enum PwOp {
    /// Set this crypt hash, locked (`!` prefix) or not.
    Set { hash: String, lock: bool },
    /// Prefix `!` unless the field already starts with one (`passwd -l`).
    Lock,
}

impl PwOp {
    fn apply(&self, current: &str) -> String {
        match self {
            PwOp::Set { hash, lock: true } => format!("!{hash}"),
            PwOp::Set { hash, lock: false } => hash.clone(),
            PwOp::Lock if current.starts_with('!') => current.to_string(),
            PwOp::Lock => format!("!{current}"),
        }
    }
}

struct Planner<'a> {
    defs: &'a LoginDefs,
    day: Option<u64>,
    passwd: Table,
    shadow: Option<Table>,
    group: Table,
    gshadow: Option<Table>,
    subuid: Option<Table>,
    subgid: Option<Table>,
    out: AccountsEdit,
}

/// Plans `users` and `passwords` (user name, crypt hash to set) against `files`; see
/// `plan_accounts_on` (this one leaves a new user's last-change day empty).
pub fn plan_accounts(
    files: &AccountFiles,
    defs: &LoginDefs,
    users: &[UserSpec],
    passwords: &[(String, String)],
) -> AccountsEdit {
    plan_accounts_on(files, defs, users, passwords, None)
}

/// Plans the account changes. `today` is the day number (days since 1970-01-01) written as a new
/// shadow line's last password change; `None` leaves it empty, which `pwck` accepts and which
/// turns password aging off for that user (planning cannot read the clock).
///
/// Rules, in order for each spec: an invalid name is refused; an existing user (by name) keeps
/// its uid, groups, home, shell and gecos (a differing request is a warning) and only gets its
/// password field set or locked and the requested supplementary groups; a new user gets the
/// requested uid (refused when taken) or one allocated as useradd does, its primary group (an
/// existing one by name, else a new group, gid = uid when free), a shadow line, and membership of
/// every requested group (missing groups are created in the system gid range). Then each
/// `passwords` entry replaces only the password field of an existing user.
pub fn plan_accounts_on(
    files: &AccountFiles,
    defs: &LoginDefs,
    users: &[UserSpec],
    passwords: &[(String, String)],
    today: Option<u64>,
) -> AccountsEdit {
    let texts = [
        ("/etc/passwd", Some(&files.passwd)),
        ("/etc/shadow", files.shadow.as_ref()),
        ("/etc/group", Some(&files.group)),
        ("/etc/gshadow", files.gshadow.as_ref()),
        ("/etc/subuid", files.subuid.as_ref()),
        ("/etc/subgid", files.subgid.as_ref()),
    ];
    for (path, text) in texts {
        if text.is_some_and(|t| t.contains('\u{FFFD}')) {
            // U+FFFD is what a lossy decoding leaves for bytes that are not UTF-8: writing this
            // text back would change those bytes.
            return AccountsEdit {
                warnings: vec![format!(
                    "{path} is not valid UTF-8 text; no account changes planned"
                )],
                ..Default::default()
            };
        }
    }
    let mut p = Planner {
        defs,
        day: today,
        passwd: Table::parse(&files.passwd),
        shadow: files.shadow.as_deref().map(Table::parse),
        group: Table::parse(&files.group),
        gshadow: files.gshadow.as_deref().map(Table::parse),
        subuid: files.subuid.as_deref().map(Table::parse),
        subgid: files.subgid.as_deref().map(Table::parse),
        out: AccountsEdit::default(),
    };
    for spec in users {
        p.user(spec);
    }
    for (name, hash) in passwords {
        if p.passwd.find(name).is_none() {
            p.warn(format!("password for {name:?} not set: no such user"));
            continue;
        }
        if let Some(why) = hash_problem(hash) {
            p.warn(format!("password hash for {name:?} refused: {why}"));
            continue;
        }
        p.set_password(
            name,
            &PwOp::Set {
                hash: hash.clone(),
                lock: false,
            },
        );
    }
    p.finish(files)
}

impl Planner<'_> {
    fn warn(&mut self, w: String) {
        self.out.warnings.push(w);
    }

    fn finish(self, files: &AccountFiles) -> AccountsEdit {
        let changed = |t: &Table, old: &str| Some(t.render()).filter(|n| n != old);
        let mut out = self.out;
        out.passwd = changed(&self.passwd, &files.passwd);
        out.group = changed(&self.group, &files.group);
        out.shadow = self
            .shadow
            .as_ref()
            .and_then(|t| changed(t, files.shadow.as_deref().unwrap_or("")));
        out.gshadow = self
            .gshadow
            .as_ref()
            .and_then(|t| changed(t, files.gshadow.as_deref().unwrap_or("")));
        out.subuid = self
            .subuid
            .as_ref()
            .and_then(|t| changed(t, files.subuid.as_deref().unwrap_or("")));
        out.subgid = self
            .subgid
            .as_ref()
            .and_then(|t| changed(t, files.subgid.as_deref().unwrap_or("")));
        let created: BTreeSet<&str> = crate::sort::set(out.created.iter().map(|c| c.name.as_str()));
        let mut changed: Vec<String> = out.passwords_changed.clone();
        changed.retain(|n| !created.contains(n.as_str()));
        crate::sort::sort(&mut changed);
        changed.dedup();
        out.passwords_changed = changed;
        out
    }

    fn user(&mut self, spec: &UserSpec) {
        let name = spec.name.as_str();
        if let Err(why) = check_name(name) {
            self.warn(format!("user {name:?} not created: invalid name ({why})"));
            return;
        }
        let pw_op = match (&spec.password_hash, spec.lock_password) {
            (Some(h), lock) => match hash_problem(h) {
                None => Some(PwOp::Set {
                    hash: h.clone(),
                    lock,
                }),
                Some(why) => {
                    self.warn(format!(
                        "password hash for {name:?} refused: {why}; password left locked"
                    ));
                    Some(PwOp::Lock)
                }
            },
            (None, true) => Some(PwOp::Lock),
            (None, false) => None,
        };
        match self.passwd.find(name) {
            Some(i) => self.existing_user(spec, i, pw_op),
            None => self.new_user(spec, pw_op),
        }
    }

    /// An existing user is never recreated, renamed or moved: only its password field and the
    /// requested memberships change.
    fn existing_user(&mut self, spec: &UserSpec, i: usize, pw_op: Option<PwOp>) {
        let name = &spec.name;
        let kept = |what: &str, asked: Option<String>, has: Option<&str>| match (asked, has) {
            (Some(a), Some(h)) if a != h => Some(format!(
                "user {name:?} exists with {what} {h:?}; requested {a:?} ignored"
            )),
            _ => None,
        };
        let notes: Vec<String> = [
            kept(
                "uid",
                spec.uid.map(|u| u.to_string()),
                self.passwd.field(i, 2),
            ),
            kept("home", spec.home.clone(), self.passwd.field(i, 5)),
            kept("shell", spec.shell.clone(), self.passwd.field(i, 6)),
        ]
        .into_iter()
        .flatten()
        .collect();
        self.out.warnings.extend(notes);
        if let Some(op) = pw_op {
            self.set_password(name, &op);
        }
        self.memberships(spec);
    }

    fn new_user(&mut self, spec: &UserSpec, pw_op: Option<PwOp>) {
        let name = spec.name.as_str();
        let d = self.defs;
        let home = match &spec.home {
            Some(h) => h.clone(),
            None => format!("{}/{name}", d.home_base.trim_end_matches('/')),
        };
        let shell = spec
            .shell
            .clone()
            .unwrap_or_else(|| d.default_shell.clone());
        let gecos = spec.gecos.clone().unwrap_or_default();
        for (what, value, ok) in [
            ("home", &home, valid_path(&home)),
            ("shell", &shell, valid_path(&shell)),
            ("gecos", &gecos, valid_field(&gecos)),
        ] {
            if !ok {
                let rule = if what == "gecos" {
                    "no ':' or control characters"
                } else {
                    "an absolute path without ':' or control characters"
                };
                self.warn(format!(
                    "user {name:?} not created: {what} {value:?} is not valid ({rule})"
                ));
                return;
            }
        }
        let used_uids = self.passwd.ids(2);
        let uid = match spec.uid {
            // uid 0 would be a second root; (uid_t)-1 is "no change" to chown.
            Some(u) if u == 0 || u == u32::MAX => {
                self.warn(format!("user {name:?} not created: uid {u} is not allowed"));
                return;
            }
            Some(u) if used_uids.contains(&u) => {
                self.warn(format!(
                    "user {name:?} not created: uid {u} is already used"
                ));
                return;
            }
            Some(u) => u,
            None => {
                let (min, max) = if spec.system {
                    (d.sys_uid_min, d.sys_uid_max)
                } else {
                    (d.uid_min, d.uid_max)
                };
                match allocate(&used_uids, min, max, spec.system) {
                    Some(u) => u,
                    None => {
                        self.warn(format!(
                            "user {name:?} not created: no free uid in {min}..={max}"
                        ));
                        return;
                    }
                }
            }
        };
        let Some(gid) = self.primary_gid(spec, uid) else {
            return;
        };
        let has_shadow = self.shadow.is_some();
        let pw_field = if has_shadow { "x" } else { "!" };
        self.passwd.push(format!(
            "{name}:{pw_field}:{uid}:{gid}:{gecos}:{home}:{shell}"
        ));
        // Without a hash a new user gets `!`, as from useradd: no password, key logins only.
        let value = match &pw_op {
            Some(op @ PwOp::Set { .. }) => op.apply(""),
            Some(PwOp::Lock) | None => "!".to_string(),
        };
        if let Some(sh) = self.shadow.as_mut() {
            match sh.find(name) {
                // A shadow line left by an interrupted run (or by hand): reuse it.
                Some(si) => {
                    sh.set_field(si, 1, &value);
                }
                None => sh.push(shadow_line(d, self.day, name, &value, !spec.system)),
            }
        } else if matches!(pw_op, Some(PwOp::Set { .. })) {
            self.warn(format!(
                "password for {name:?} not set: there is no /etc/shadow (a hash is not put into world-readable /etc/passwd)"
            ));
        }
        self.out.created.push(CreatedUser {
            name: name.to_string(),
            uid,
            gid,
            home,
            shell,
            create_home: spec.create_home,
        });
        // useradd gives subordinate ids to a user that is not a system account and whose uid,
        // when given, lies in the normal range.
        if !spec.system
            && spec
                .uid
                .is_none_or(|u| (d.uid_min..=d.uid_max).contains(&u))
        {
            self.sub_ids(name);
        }
        self.memberships(spec);
    }

    /// Appends `name`'s subordinate uid and gid ranges to the files that exist (a name that
    /// already has a line there, e.g. from an interrupted run, keeps it).
    fn sub_ids(&mut self, name: &str) {
        let d = self.defs;
        for (file, table, ids) in [
            ("/etc/subuid", self.subuid.as_mut(), d.sub_uids),
            ("/etc/subgid", self.subgid.as_mut(), d.sub_gids),
        ] {
            let Some(table) = table else { continue };
            if ids.count == 0 || table.find(name).is_some() {
                continue;
            }
            match claim_sub_range(table, ids) {
                Some(start) => table.push(format!("{name}:{start}:{}", ids.count)),
                None => self.out.warnings.push(format!(
                    "user {name:?} gets no range in {file}: no {} free ids in {}..={}",
                    ids.count, ids.min, ids.max
                )),
            }
        }
    }

    /// The new user's primary group id: an existing group by name, else a group created for it
    /// (gid = uid when free), or `default_group` without user-private groups. `None` (warned):
    /// the user cannot be created.
    fn primary_gid(&mut self, spec: &UserSpec, uid: u32) -> Option<u32> {
        let name = spec.name.as_str();
        let d = self.defs;
        let wanted = match (&spec.primary_group, d.usergroups_enab) {
            (Some(g), _) => Some(g.as_str()),
            (None, true) => Some(name),
            (None, false) => None,
        };
        match wanted {
            None => Some(d.default_group),
            Some(g) => match self.group.find(g) {
                Some(gi) => match self.group.field(gi, 2).and_then(|v| v.parse().ok()) {
                    Some(gid) => {
                        if spec.primary_group.is_none() {
                            // useradd refuses here; adopting it lets a run interrupted after
                            // writing /etc/group finish (gshadow, written after group, may
                            // lack the line: add it).
                            self.warn(format!(
                                "group {g:?} already exists; used as the primary group of new user {name:?}"
                            ));
                            if let Some(gs) = self.gshadow.as_mut() {
                                if gs.find(g).is_none() {
                                    gs.push(format!("{g}:!::"));
                                }
                            }
                        }
                        Some(gid)
                    }
                    None => {
                        self.warn(format!(
                            "user {name:?} not created: group {g:?} has no valid gid"
                        ));
                        None
                    }
                },
                None => {
                    if let Err(why) = check_name(g) {
                        self.warn(format!(
                            "user {name:?} not created: primary group {g:?} is not a valid name ({why})"
                        ));
                        return None;
                    }
                    let gid = self.new_gid(Some(uid), spec.system);
                    match gid {
                        Some(gid) => self.add_group(g, gid),
                        None => self.warn(format!(
                            "user {name:?} not created: no free gid for group {g:?}"
                        )),
                    }
                    gid
                }
            },
        }
    }

    /// A gid for a new group: `preferred` (the new user's uid) when it is free and in range,
    /// else allocated in the system or normal range.
    fn new_gid(&self, preferred: Option<u32>, system: bool) -> Option<u32> {
        let d = self.defs;
        let used = self.group.ids(2);
        let (min, max) = if system {
            (d.sys_gid_min, d.sys_gid_max)
        } else {
            (d.gid_min, d.gid_max)
        };
        // As shadow's find_new_gid: a preferred id may lie below a system range (not above).
        let pref_min = if system { 1 } else { min };
        if let Some(p) = preferred {
            if (pref_min..=max).contains(&p) && !used.contains(&p) && !reserved_id(p) {
                return Some(p);
            }
        }
        allocate(&used, min, max, system)
    }

    fn add_group(&mut self, name: &str, gid: u32) {
        let pw = if self.gshadow.is_some() { "x" } else { "!" };
        self.group.push(format!("{name}:{pw}:{gid}:"));
        if let Some(gs) = self.gshadow.as_mut() {
            if gs.find(name).is_none() {
                gs.push(format!("{name}:!::"));
            }
        }
        self.out.created_groups.push(CreatedGroup {
            name: name.to_string(),
            gid,
        });
    }

    /// Adds the user to every requested supplementary group, creating missing groups.
    fn memberships(&mut self, spec: &UserSpec) {
        let name = spec.name.as_str();
        let mut seen = BTreeSet::new();
        for g in &spec.groups {
            if !seen.insert(g.as_str()) {
                continue;
            }
            if !valid_group_ref(g) {
                self.warn(format!(
                    "group {g:?} for {name:?} ignored: not a usable group name"
                ));
                continue;
            }
            let gi = match self.group.find(g) {
                Some(gi) => gi,
                None => {
                    if let Err(why) = check_name(g) {
                        self.warn(format!(
                            "group {g:?} for {name:?} not created: invalid name ({why})"
                        ));
                        continue;
                    }
                    let Some(gid) = self.new_gid(None, true) else {
                        let d = self.defs;
                        self.warn(format!(
                            "group {g:?} for {name:?} not created: no free gid in {}..={}",
                            d.sys_gid_min, d.sys_gid_max
                        ));
                        continue;
                    };
                    self.add_group(g, gid);
                    self.group.lines.len() - 1
                }
            };
            let Some(members) = self.group.field(gi, 3).map(str::to_string) else {
                self.warn(format!(
                    "{name:?} not added to group {g:?}: its /etc/group line is malformed"
                ));
                continue;
            };
            let members = match with_member(&members, name) {
                Some(m) => {
                    self.group.set_field(gi, 3, &m);
                    m
                }
                None => members,
            };
            self.gshadow_member(g, name, &members);
        }
    }

    /// Membership in gshadow too (`newgrp` and `grpck` read it); a group missing there gets a
    /// line carrying the group file's members.
    fn gshadow_member(&mut self, g: &str, name: &str, group_members: &str) {
        let Some(gs) = self.gshadow.as_mut() else {
            return;
        };
        match gs.find(g) {
            Some(si) => match gs.field(si, 3).map(str::to_string) {
                Some(m) => {
                    if let Some(m) = with_member(&m, name) {
                        gs.set_field(si, 3, &m);
                    }
                }
                None => self.out.warnings.push(format!(
                    "{name:?} not added to group {g:?} in /etc/gshadow: its line is malformed"
                )),
            },
            None => {
                // Only members that are names: a control character in a broken group line
                // is not carried into a line primer writes.
                let members: Vec<&str> = group_members
                    .split(',')
                    .filter(|m| valid_group_ref(m))
                    .collect();
                gs.push(format!("{g}:!::{}", members.join(",")))
            }
        }
    }

    /// Changes only the password field of `name` (true when it changed). The field lives in
    /// shadow; a user without a shadow line gets one, and a password still kept in passwd is
    /// moved to shadow (passwd's field becomes `x`, as `pwconv` does). Without /etc/shadow
    /// nothing changes: a hash never goes into world-readable /etc/passwd.
    fn set_password(&mut self, name: &str, op: &PwOp) -> bool {
        let Some(pi) = self.passwd.find(name) else {
            return false;
        };
        if self.passwd.field(pi, 6).is_none() || self.passwd.field(pi, 7).is_some() {
            self.out.warnings.push(format!(
                "password of {name:?} left unchanged: its /etc/passwd line is malformed"
            ));
            return false;
        }
        let Some(sh) = self.shadow.as_mut() else {
            self.out.warnings.push(format!(
                "password of {name:?} left unchanged: there is no /etc/shadow"
            ));
            return false;
        };
        // A password field holding a control character is a broken line, not a password: it is
        // never carried into a changed or new line (found by fuzz/accounts).
        let broken = |f: &str| f.chars().any(crate::model::grammar::is_line_breaking);
        if let Some(si) = sh.find(name) {
            let current = sh.field(si, 1).unwrap_or("").to_string();
            if broken(&current) {
                self.out.warnings.push(format!(
                    "password of {name:?} left unchanged: its /etc/shadow line holds a control character"
                ));
                return false;
            }
            let new = op.apply(&current);
            if new == current {
                return false;
            }
            sh.set_field(si, 1, &new);
        } else {
            let in_passwd = self.passwd.field(pi, 1).unwrap_or("").to_string();
            if broken(&in_passwd) {
                self.out.warnings.push(format!(
                    "password of {name:?} left unchanged: its /etc/passwd line holds a control character"
                ));
                return false;
            }
            // `x` means "see shadow": with no shadow line there is no usable password.
            let current = if in_passwd == "x" {
                ""
            } else {
                in_passwd.as_str()
            };
            let new = match op {
                PwOp::Lock if current.is_empty() => "!".to_string(),
                _ => op.apply(current),
            };
            // Aging as for a new account of its kind (a uid below UID_MIN: a system account).
            let regular = self
                .passwd
                .field(pi, 2)
                .and_then(|u| u.parse::<u32>().ok())
                .is_some_and(|u| u >= self.defs.uid_min);
            sh.push(shadow_line(self.defs, self.day, name, &new, regular));
            if in_passwd != "x" {
                self.passwd.set_field(pi, 1, "x");
            }
        }
        self.out.passwords_changed.push(name.to_string());
        true
    }
}

/// A new shadow line as useradd writes it: aging fields from login.defs for a regular account,
/// empty for a system account (useradd `-r`), no inactivity, expiry or flag.
fn shadow_line(d: &LoginDefs, day: Option<u64>, name: &str, pw: &str, aging: bool) -> String {
    let opt = |v: Option<u32>| match v {
        Some(v) if aging => v.to_string(),
        _ => String::new(),
    };
    let day = day.map(|v| v.to_string()).unwrap_or_default();
    format!(
        "{name}:{pw}:{day}:{}:{}:{}:::",
        opt(d.pass_min_days),
        opt(d.pass_max_days),
        opt(d.pass_warn_age)
    )
}

// ---------------------------------------------------------------------------------------------
// Password hashing
// ---------------------------------------------------------------------------------------------

/// The crypt base-64 alphabet (salt characters).
const CRYPT_ALPHABET: &[u8; 64] =
    b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// 16 salt characters from 12 random bytes (96 bits, 6 per character).
fn salt_chars(bytes: &[u8; 12]) -> String {
    let mut s = String::with_capacity(16);
    for c in bytes.chunks_exact(3) {
        let (a, b, d) = match c {
            [a, b, d] => (*a, *b, *d),
            _ => continue,
        };
        for v in [
            a >> 2,
            (a << 4 | b >> 4) & 63,
            (b << 2 | d >> 6) & 63,
            d & 63,
        ] {
            s.push(char::from(CRYPT_ALPHABET[usize::from(v & 63)]));
        }
    }
    s
}

/// What `crypt(3)` hashes: the password as a C string, so up to its first NUL byte.
fn as_c_string(password: &[u8]) -> &[u8] {
    match password.iter().position(|&b| b == 0) {
        Some(n) => &password[..n],
        None => password,
    }
}

/// Hashes `password` with SHA-512 crypt and the default 5000 rounds:
/// `$6$<16 salt chars>$<86 chars>`, the string `crypt(3)` (and `openssl passwd -6 -salt`) give.
/// The salt characters are derived from `salt_bytes`, which the caller draws at random (planning
/// has no randomness of its own). Uses RustCrypto's `sha-crypt`, whose `sha512_crypt_b64` takes
/// the salt as an argument.
pub fn hash_password(password: &[u8], salt_bytes: &[u8; 12]) -> String {
    let salt = salt_chars(salt_bytes);
    match sha_crypt::sha512_crypt_b64(
        as_c_string(password),
        salt.as_bytes(),
        &Sha512Params::default(),
    ) {
        Ok(h) => format!("$6${salt}${h}"),
        // Only a rounds value out of range fails, and the default is in range. Should it ever
        // fail, a locked field is the safe answer: never an empty (passwordless) hash.
        Err(_) => "!".to_string(),
    }
}

/// Whether `password` matches a SHA-512 (`$6$`) or SHA-256 (`$5$`) crypt hash, with or without
/// `rounds=`. Other schemes (yescrypt `$y$`, bookworm's `passwd` default; MD5; DES) and
/// malformed hashes give false. The comparison is constant-time. A `rounds=` value is honoured
/// as given (up to 999,999,999, as crypt does): verify only hashes you trust to be sane.
pub fn verify_password(password: &[u8], hash: &str) -> bool {
    let parts: Vec<&str> = hash.split('$').collect();
    let (id, rounds, salt, digest) = match parts.as_slice() {
        ["", id, salt, digest] => (*id, None, *salt, *digest),
        ["", id, r, salt, digest] => match r.strip_prefix("rounds=") {
            Some(n) => match n.parse::<usize>() {
                Ok(n) => (*id, Some(n), *salt, *digest),
                Err(_) => return false,
            },
            None => return false,
        },
        _ => return false,
    };
    // crypt uses at most 16 salt characters and prints the ones it used: a longer salt can
    // never be what crypt produced.
    if salt.len() > 16 {
        return false;
    }
    let rounds = rounds.unwrap_or(sha_crypt::ROUNDS_DEFAULT);
    if !(ROUNDS_MIN..=ROUNDS_MAX).contains(&rounds) {
        return false;
    }
    let pw = as_c_string(password);
    let computed = match id {
        "6" => Sha512Params::new(rounds)
            .and_then(|p| sha_crypt::sha512_crypt_b64(pw, salt.as_bytes(), &p)),
        "5" => Sha256Params::new(rounds)
            .and_then(|p| sha_crypt::sha256_crypt_b64(pw, salt.as_bytes(), &p)),
        _ => return false,
    };
    match computed {
        Ok(c) => constant_time_eq(c.as_bytes(), digest.as_bytes()),
        Err(_) => false,
    }
}

/// Equal without an early exit on the first differing byte (lengths are public: fixed per scheme).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\n\
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n\
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n\
systemd-network:x:998:998:systemd Network Management:/:/usr/sbin/nologin\n\
sshd:x:101:65534::/run/sshd:/usr/sbin/nologin\n\
debian:x:1000:1000:Debian:/home/debian:/bin/bash\n";
    const SHADOW: &str = "root:*:19000:0:99999:7:::\n\
daemon:*:19000:0:99999:7:::\n\
nobody:*:19000:0:99999:7:::\n\
systemd-network:!*:19000::::::\n\
sshd:!:19000::::::\n\
debian:$6$old$hash:19000:0:99999:7:::\n";
    const GROUP: &str = "root:x:0:\n\
daemon:x:1:\n\
adm:x:4:debian\n\
sudo:x:27:debian\n\
users:x:100:\n\
nogroup:x:65534:\n\
systemd-network:x:998:\n\
debian:x:1000:\n";
    const GSHADOW: &str = "root:*::\n\
daemon:*::\n\
adm:*::debian\n\
sudo:*::debian\n\
users:*::\n\
nogroup:*::\n\
systemd-network:!*::\n\
debian:!::\n";

    fn files() -> AccountFiles {
        AccountFiles {
            passwd: PASSWD.into(),
            shadow: Some(SHADOW.into()),
            group: GROUP.into(),
            gshadow: Some(GSHADOW.into()),
            ..Default::default()
        }
    }

    fn user(name: &str) -> UserSpec {
        UserSpec {
            name: name.into(),
            ..Default::default()
        }
    }

    /// Lines of `new` that are not in `old` at the same position (old must be a prefix).
    fn appended(old: &str, new: &Option<String>) -> Vec<String> {
        let new = new.as_deref().unwrap_or(old);
        assert!(
            new.starts_with(old),
            "existing lines changed:\n{old}\n---\n{new}"
        );
        new[old.len()..].lines().map(str::to_string).collect()
    }

    #[test]
    fn login_defs_table() {
        let d = LoginDefs::default();
        let cases: Vec<(&str, LoginDefs)> = vec![
            ("", d.clone()),
            ("# comment only\nUID_MIN\n", d.clone()),
            (
                "UID_MIN 2000\nUID_MAX\t3000\n",
                LoginDefs {
                    uid_min: 2000,
                    uid_max: 3000,
                    sys_uid_max: 1999,
                    ..d.clone()
                },
            ),
            (
                "UID_MIN 500\nSYS_UID_MAX 499\nSYS_UID_MIN 200\nGID_MIN 500\n",
                LoginDefs {
                    uid_min: 500,
                    sys_uid_max: 499,
                    sys_uid_min: 200,
                    gid_min: 500,
                    sys_gid_max: 499,
                    ..d.clone()
                },
            ),
            (
                "UMASK 027\n",
                LoginDefs {
                    home_mode: 0o750,
                    ..d.clone()
                },
            ),
            (
                "UMASK 022\nHOME_MODE 0700\n",
                LoginDefs {
                    home_mode: 0o700,
                    ..d.clone()
                },
            ),
            (
                "USERGROUPS_ENAB no\nPASS_MAX_DAYS -1\nPASS_MIN_DAYS x\nPASS_WARN_AGE 14\n",
                LoginDefs {
                    usergroups_enab: false,
                    pass_max_days: None,
                    pass_warn_age: Some(14),
                    ..d.clone()
                },
            ),
            // Later definitions win; garbage keeps the default.
            (
                "UID_MIN 1500\nUID_MIN 1600\nGID_MAX lots\n",
                LoginDefs {
                    uid_min: 1600,
                    sys_uid_max: 1599,
                    ..d.clone()
                },
            ),
            (
                "USERGROUPS_ENAB \"YES\"\n",
                LoginDefs {
                    usergroups_enab: true,
                    ..d.clone()
                },
            ),
        ];
        for (text, want) in cases {
            assert_eq!(parse_login_defs(text), want, "{text:?}");
        }
    }

    #[test]
    fn useradd_defaults() {
        let d = parse_useradd_defaults(
            "# useradd defaults\nSHELL=/bin/bash\nHOME=/srv/home\nGROUP=users\nINACTIVE=-1\n",
            LoginDefs::default(),
        );
        assert_eq!(d.default_shell, "/bin/bash");
        assert_eq!(d.home_base, "/srv/home");
        assert_eq!(d.default_group, 100);
        let d = parse_useradd_defaults("SHELL=bash\nGROUP=50\n", LoginDefs::default());
        assert_eq!(d.default_shell, "/bin/sh");
        assert_eq!(d.default_group, 50);
    }

    #[test]
    fn names_table() {
        for (name, ok) in [
            ("alice", true),
            ("_svc", true),
            ("a-b_c9", true),
            ("machine$", true),
            ("a$b", false),
            ("", false),
            ("Alice", false),
            ("9lives", false),
            ("-x", false),
            ("a b", false),
            ("a:b", false),
            ("a\nb", false),
            ("é", false),
            (&"a".repeat(32), true),
            (&"a".repeat(33), false),
        ] {
            assert_eq!(check_name(name).is_ok(), ok, "{name:?}");
        }
    }

    #[test]
    fn allocation_table() {
        let set = |v: &[u32]| v.iter().copied().collect::<BTreeSet<u32>>();
        for (used, min, max, system, want) in [
            (vec![], 1000, 60000, false, Some(1000)),
            (vec![0, 1000], 1000, 60000, false, Some(1001)),
            // Above the highest used id: a hole (a deleted user's id) is not reused.
            (vec![1000, 1005], 1000, 60000, false, Some(1006)),
            // A full top falls back to the lowest free id.
            (vec![1000, 1002], 1000, 1002, false, Some(1001)),
            (vec![1000, 1001, 1002], 1000, 1002, false, None),
            (vec![], 100, 999, true, Some(999)),
            (vec![998, 999], 100, 999, true, Some(997)),
            (vec![101, 998], 100, 999, true, Some(100)),
            (vec![100, 998], 100, 999, true, Some(999)),
            (vec![100, 999], 100, 101, true, Some(101)),
            (vec![], 2000, 1000, false, None),
            (vec![], 0, 10, true, Some(10)),
            (vec![1, 2], 0, 2, true, None),
            // The 16-bit -1 is never handed out.
            (vec![65534], 65530, 65536, false, Some(65536)),
        ] {
            assert_eq!(
                allocate(&set(&used), min, max, system),
                want,
                "{used:?} {min} {max} {system}"
            );
        }
    }

    #[test]
    fn table_round_trip_is_byte_exact() {
        for text in [
            "",
            "\n",
            "a:b\n",
            "a:b",
            "# comment\n\n+::::::\nroot:x:0:0::/root:/bin/sh\r\nodd line without colons\n",
            "\n\n\n",
            "x:\u{1}:y\n",
        ] {
            assert_eq!(Table::parse(text).render(), text, "{text:?}");
        }
        let mut t = Table::parse("a:1:\r\nb:2:");
        assert!(t.set_field(0, 2, "m"));
        assert!(!t.set_field(0, 7, "m"));
        t.push("c:3:".into());
        assert_eq!(t.render(), "a:1:m\r\nb:2:\nc:3:\n");
    }

    #[test]
    fn members_table() {
        for (list, want) in [
            ("", Some("x")),
            ("a", Some("a,x")),
            ("a,", Some("a,x")),
            ("a,x", None),
            ("x", None),
            ("xx", Some("xx,x")),
        ] {
            assert_eq!(with_member(list, "x").as_deref(), want, "{list:?}");
        }
    }

    #[test]
    fn plain_user() {
        let e = plan_accounts(&files(), &LoginDefs::default(), &[user("alice")], &[]);
        assert_eq!(e.warnings, Vec::<String>::new());
        assert_eq!(
            appended(PASSWD, &e.passwd),
            ["alice:x:1001:1001::/home/alice:/bin/sh"]
        );
        assert_eq!(appended(SHADOW, &e.shadow), ["alice:!::0:99999:7:::"]);
        assert_eq!(appended(GROUP, &e.group), ["alice:x:1001:"]);
        assert_eq!(appended(GSHADOW, &e.gshadow), ["alice:!::"]);
        assert_eq!(
            e.created,
            [CreatedUser {
                name: "alice".into(),
                uid: 1001,
                gid: 1001,
                home: "/home/alice".into(),
                shell: "/bin/sh".into(),
                create_home: false,
            }]
        );
        // Planning again on the result changes nothing.
        let again = AccountFiles {
            passwd: e.passwd.clone().unwrap(),
            shadow: e.shadow.clone(),
            group: e.group.clone().unwrap(),
            gshadow: e.gshadow.clone(),
            ..Default::default()
        };
        let e2 = plan_accounts(&again, &LoginDefs::default(), &[user("alice")], &[]);
        assert!(!e2.changes(), "{e2:?}");
        assert!(e2.created.is_empty());
    }

    #[test]
    fn user_table() {
        struct Case {
            what: &'static str,
            spec: UserSpec,
            passwd: Vec<&'static str>,
            shadow: Vec<&'static str>,
            group: Vec<&'static str>,
            gshadow: Vec<&'static str>,
            /// Existing group/gshadow lines that gain a member: (old line, new line).
            members: Vec<(&'static str, &'static str)>,
            warn: Option<&'static str>,
        }
        let cases = vec![
            Case {
                what: "system user: highest free uid below the lowest used system uid",
                spec: UserSpec {
                    system: true,
                    shell: Some("/usr/sbin/nologin".into()),
                    home: Some("/nonexistent".into()),
                    ..user("svc")
                },
                passwd: vec!["svc:x:100:999::/nonexistent:/usr/sbin/nologin"],
                shadow: vec!["svc:!:::::::"],
                group: vec!["svc:x:999:"],
                gshadow: vec!["svc:!::"],
                members: vec![],
                warn: None,
            },
            Case {
                what: "groups: existing, missing (system gid), duplicate, with a sudo group",
                spec: UserSpec {
                    groups: vec!["sudo".into(), "docker".into(), "adm".into(), "sudo".into()],
                    gecos: Some("Alice A.,,,".into()),
                    shell: Some("/bin/bash".into()),
                    password_hash: Some("$6$salt$h".into()),
                    ..user("alice")
                },
                passwd: vec!["alice:x:1001:1001:Alice A.,,,:/home/alice:/bin/bash"],
                shadow: vec!["alice:$6$salt$h::0:99999:7:::"],
                group: vec!["alice:x:1001:", "docker:x:999:alice"],
                gshadow: vec!["alice:!::", "docker:!::alice"],
                members: vec![
                    ("adm:x:4:debian", "adm:x:4:debian,alice"),
                    ("sudo:x:27:debian", "sudo:x:27:debian,alice"),
                    ("adm:*::debian", "adm:*::debian,alice"),
                    ("sudo:*::debian", "sudo:*::debian,alice"),
                ],
                warn: None,
            },
            Case {
                what: "explicit uid; gid follows when free",
                spec: UserSpec {
                    uid: Some(2500),
                    lock_password: true,
                    password_hash: Some("$6$s$h".into()),
                    ..user("bob")
                },
                passwd: vec!["bob:x:2500:2500::/home/bob:/bin/sh"],
                shadow: vec!["bob:!$6$s$h::0:99999:7:::"],
                group: vec!["bob:x:2500:"],
                gshadow: vec!["bob:!::"],
                members: vec![],
                warn: None,
            },
            Case {
                what: "uid free but out of the gid range: gid allocated",
                spec: UserSpec {
                    uid: Some(100),
                    ..user("carol")
                },
                passwd: vec!["carol:x:100:1001::/home/carol:/bin/sh"],
                shadow: vec!["carol:!::0:99999:7:::"],
                group: vec!["carol:x:1001:"],
                gshadow: vec!["carol:!::"],
                members: vec![],
                warn: None,
            },
            Case {
                what: "explicit uid taken",
                spec: UserSpec {
                    uid: Some(0),
                    ..user("toor")
                },
                passwd: vec![],
                shadow: vec![],
                group: vec![],
                gshadow: vec![],
                members: vec![],
                warn: Some("user \"toor\" not created: uid 0 is not allowed"),
            },
            Case {
                what: "existing primary group by name",
                spec: UserSpec {
                    primary_group: Some("users".into()),
                    ..user("dave")
                },
                passwd: vec!["dave:x:1001:100::/home/dave:/bin/sh"],
                shadow: vec!["dave:!::0:99999:7:::"],
                group: vec![],
                gshadow: vec![],
                members: vec![],
                warn: None,
            },
            Case {
                what: "invalid name",
                spec: user("Bad:Name"),
                passwd: vec![],
                shadow: vec![],
                group: vec![],
                gshadow: vec![],
                members: vec![],
                warn: Some("invalid name"),
            },
            Case {
                what: "newline in gecos",
                spec: UserSpec {
                    gecos: Some("x\nroot::0:0::/:/bin/sh".into()),
                    ..user("eve")
                },
                passwd: vec![],
                shadow: vec![],
                group: vec![],
                gshadow: vec![],
                members: vec![],
                warn: Some("gecos"),
            },
            Case {
                what: "relative home",
                spec: UserSpec {
                    home: Some("home/eve".into()),
                    ..user("eve")
                },
                passwd: vec![],
                shadow: vec![],
                group: vec![],
                gshadow: vec![],
                members: vec![],
                warn: Some("home"),
            },
            Case {
                what: "invalid missing group is skipped, user still created",
                spec: UserSpec {
                    groups: vec!["Bad Group".into(), "GOOD".into()],
                    ..user("frank")
                },
                passwd: vec!["frank:x:1001:1001::/home/frank:/bin/sh"],
                shadow: vec!["frank:!::0:99999:7:::"],
                group: vec!["frank:x:1001:"],
                gshadow: vec!["frank:!::"],
                members: vec![],
                warn: Some("\"GOOD\" for \"frank\" not created"),
            },
            Case {
                what: "an empty hash is refused: the user is created locked",
                spec: UserSpec {
                    password_hash: Some(String::new()),
                    ..user("gina")
                },
                passwd: vec!["gina:x:1001:1001::/home/gina:/bin/sh"],
                shadow: vec!["gina:!::0:99999:7:::"],
                group: vec!["gina:x:1001:"],
                gshadow: vec!["gina:!::"],
                members: vec![],
                warn: Some("empty"),
            },
        ];
        for c in cases {
            let e = plan_accounts(&files(), &LoginDefs::default(), &[c.spec], &[]);
            let what = c.what;
            let (mut group, mut gshadow) = (GROUP.to_string(), GSHADOW.to_string());
            for (old, new) in &c.members {
                group = group.replace(&format!("{old}\n"), &format!("{new}\n"));
                gshadow = gshadow.replace(&format!("{old}\n"), &format!("{new}\n"));
            }
            let group_edit = e.group.clone().or(Some(GROUP.to_string()));
            let gshadow_edit = e.gshadow.clone().or(Some(GSHADOW.to_string()));
            assert_eq!(appended(PASSWD, &e.passwd), c.passwd, "{what}: passwd");
            assert_eq!(appended(&group, &group_edit), c.group, "{what}: group");
            assert_eq!(
                appended(&gshadow, &gshadow_edit),
                c.gshadow,
                "{what}: gshadow"
            );
            if !c.shadow.is_empty() || c.passwd.is_empty() {
                assert_eq!(appended(SHADOW, &e.shadow), c.shadow, "{what}: shadow");
            }
            match c.warn {
                Some(w) => assert!(
                    e.warnings.iter().any(|x| x.contains(w)),
                    "{what}: {:?}",
                    e.warnings
                ),
                None => assert_eq!(e.warnings, Vec::<String>::new(), "{what}"),
            }
        }
    }

    #[test]
    fn uid_collision_case_is_checked_separately() {
        // uid 998 is systemd-network's: the spec is refused, nothing changes.
        let spec = UserSpec {
            uid: Some(998),
            ..user("carol")
        };
        let e = plan_accounts(&files(), &LoginDefs::default(), &[spec], &[]);
        assert!(!e.changes());
        assert!(e.created.is_empty());
        assert_eq!(
            e.warnings,
            ["user \"carol\" not created: uid 998 is already used"]
        );
    }

    #[test]
    fn existing_user_keeps_everything_but_the_password_field() {
        let spec = UserSpec {
            uid: Some(4242),
            home: Some("/srv/debian".into()),
            shell: Some("/bin/zsh".into()),
            gecos: Some("Someone else".into()),
            groups: vec!["sudo".into(), "docker".into()],
            password_hash: Some("$6$new$hash".into()),
            ..user("debian")
        };
        let e = plan_accounts(&files(), &LoginDefs::default(), &[spec], &[]);
        assert_eq!(e.passwd, None);
        assert!(e.created.is_empty());
        assert_eq!(
            e.shadow.as_deref(),
            Some(SHADOW.replace("$6$old$hash", "$6$new$hash").as_str())
        );
        // Already in sudo; docker is created with debian as its member.
        assert_eq!(appended(GROUP, &e.group), ["docker:x:999:debian"]);
        assert_eq!(e.passwords_changed, ["debian"]);
        assert_eq!(e.warnings.len(), 3, "{:?}", e.warnings);
    }

    #[test]
    fn password_ops_table() {
        for (what, shadow_line, op, want) in [
            (
                "set",
                "u:old:1:::::",
                PwOp::Set {
                    hash: "$6$a$b".into(),
                    lock: false,
                },
                "u:$6$a$b:1:::::",
            ),
            (
                "set locked",
                "u:old:1:::::",
                PwOp::Set {
                    hash: "$6$a$b".into(),
                    lock: true,
                },
                "u:!$6$a$b:1:::::",
            ),
            ("lock", "u:$6$a$b:1:::::", PwOp::Lock, "u:!$6$a$b:1:::::"),
            (
                "lock is idempotent",
                "u:!$6$a$b:1:::::",
                PwOp::Lock,
                "u:!$6$a$b:1:::::",
            ),
            ("lock star", "u:*:1:::::", PwOp::Lock, "u:!*:1:::::"),
            ("lock empty", "u::1:::::", PwOp::Lock, "u:!:1:::::"),
        ] {
            let f = AccountFiles {
                passwd: "u:x:1000:1000::/home/u:/bin/sh\n".into(),
                shadow: Some(format!("{shadow_line}\n")),
                group: "u:x:1000:\n".into(),
                gshadow: None,
                ..Default::default()
            };
            let mut p = Planner {
                defs: &LoginDefs::default(),
                day: None,
                passwd: Table::parse(&f.passwd),
                shadow: f.shadow.as_deref().map(Table::parse),
                group: Table::parse(&f.group),
                gshadow: None,
                out: AccountsEdit::default(),
                subuid: None,
                subgid: None,
            };
            p.set_password("u", &op);
            let e = p.finish(&f);
            let got = e.shadow.unwrap_or(format!("{shadow_line}\n"));
            assert_eq!(got, format!("{want}\n"), "{what}");
        }
    }

    #[test]
    fn passwords_list() {
        let pw = |u: &str, h: &str| (u.to_string(), h.to_string());
        let e = plan_accounts(
            &files(),
            &LoginDefs::default(),
            &[],
            &[
                pw("root", "$6$r$h"),
                pw("ghost", "$6$g$h"),
                pw("daemon", "bad:hash"),
                pw("debian", ""),
            ],
        );
        assert_eq!(
            e.shadow.as_deref(),
            Some(SHADOW.replacen("root:*:", "root:$6$r$h:", 1).as_str())
        );
        assert_eq!(e.passwd, None);
        assert_eq!(e.warnings.len(), 3, "{:?}", e.warnings);
        assert!(e.warnings.iter().all(|w| !w.contains("bad:hash")));
        // Same hash again: nothing to do.
        let f2 = AccountFiles {
            shadow: e.shadow.clone(),
            ..files()
        };
        let e2 = plan_accounts(&f2, &LoginDefs::default(), &[], &[pw("root", "$6$r$h")]);
        assert!(!e2.changes());
        assert!(e2.passwords_changed.is_empty());
        // A user created in the same run is reported as created, not as a password change.
        let e3 = plan_accounts(
            &files(),
            &LoginDefs::default(),
            &[user("new")],
            &[pw("new", "$6$n$h")],
        );
        assert_eq!(e3.passwords_changed, Vec::<String>::new());
        assert!(e3.shadow.unwrap().ends_with("\nnew:$6$n$h::0:99999:7:::\n"));
    }

    #[test]
    fn password_moves_out_of_passwd_and_missing_shadow_line_is_added() {
        let f = AccountFiles {
            passwd:
                "legacy:$1$x$y:1000:1000::/home/legacy:/bin/sh\nnoline:x:1001:1001::/:/bin/sh\n"
                    .into(),
            shadow: Some(String::new()),
            group: String::new(),
            gshadow: None,
            ..Default::default()
        };
        let spec = |n: &str| UserSpec {
            lock_password: true,
            ..user(n)
        };
        let e = plan_accounts_on(
            &f,
            &LoginDefs::default(),
            &[spec("legacy"), spec("noline")],
            &[],
            Some(20000),
        );
        assert_eq!(
            e.passwd.as_deref(),
            Some("legacy:x:1000:1000::/home/legacy:/bin/sh\nnoline:x:1001:1001::/:/bin/sh\n")
        );
        assert_eq!(
            e.shadow.as_deref(),
            Some("legacy:!$1$x$y:20000:0:99999:7:::\nnoline:!:20000:0:99999:7:::\n")
        );
    }

    #[test]
    fn a_password_field_with_a_control_character_is_never_carried_into_shadow() {
        let f = AccountFiles {
            passwd: "cr:ab\rc:1000:1000::/home/cr:/bin/sh\nsh:x:1001:1001::/:/bin/sh\n".into(),
            shadow: Some("sh:a\u{1b}b:20000:0:99999:7:::\n".into()),
            group: String::new(),
            gshadow: None,
            ..Default::default()
        };
        let spec = |n: &str| UserSpec {
            lock_password: true,
            ..user(n)
        };
        let e = plan_accounts_on(
            &f,
            &LoginDefs::default(),
            &[spec("cr"), spec("sh")],
            &[],
            Some(20000),
        );
        // Neither file changes; each refusal is a warning naming the user.
        assert_eq!(e.shadow, None, "{:?}", e.shadow);
        assert_eq!(e.passwd, None, "{:?}", e.passwd);
        assert_eq!(
            e.warnings
                .iter()
                .filter(|w| w.contains("holds a control character"))
                .count(),
            2,
            "{:?}",
            e.warnings
        );
    }

    #[test]
    fn no_shadow_file_no_hash_in_passwd() {
        let f = AccountFiles {
            passwd: PASSWD.into(),
            shadow: None,
            group: GROUP.into(),
            gshadow: None,
            ..Default::default()
        };
        let spec = UserSpec {
            password_hash: Some("$6$a$b".into()),
            ..user("alice")
        };
        let e = plan_accounts(
            &f,
            &LoginDefs::default(),
            &[spec],
            &[("root".into(), "$6$c$d".into())],
        );
        assert_eq!(
            appended(PASSWD, &e.passwd),
            ["alice:!:1001:1001::/home/alice:/bin/sh"]
        );
        assert_eq!(appended(GROUP, &e.group), ["alice:!:1001:"]);
        assert!(e.shadow.is_none() && e.gshadow.is_none());
        assert!(!e.passwd.unwrap().contains("$6$"));
        assert_eq!(e.warnings.len(), 2, "{:?}", e.warnings);
    }

    #[test]
    fn odd_lines_are_kept_and_never_panic() {
        let odd = "# managed by hand\n\n+::::::\nroot:x:0:0:root:/root:/bin/bash\r\nbroken\n:::\nx:y\nhigh:x:99999999999:1:::\n";
        let f = AccountFiles {
            passwd: odd.into(),
            shadow: Some("garbage\nroot\n".into()),
            group: "grp\nsudo:x:27\n::\n".into(),
            gshadow: Some("sudo\n".into()),
            ..Default::default()
        };
        let spec = UserSpec {
            groups: vec!["sudo".into(), "wheel".into()],
            lock_password: true,
            ..user("alice")
        };
        let e = plan_accounts(
            &f,
            &LoginDefs::default(),
            &[spec, user("root")],
            &[
                ("root".into(), "$6$a$b".into()),
                ("x".into(), "$6$a$b".into()),
            ],
        );
        assert_eq!(
            appended(odd, &e.passwd),
            ["alice:x:1000:1000::/home/alice:/bin/sh"]
        );
        assert!(e.shadow.as_deref().unwrap().starts_with("garbage\nroot\n"));
        assert!(e
            .group
            .as_deref()
            .unwrap()
            .starts_with("grp\nsudo:x:27\n::\n"));
        // sudo's group line lacks the member field: a warning, not a rewrite.
        assert!(
            e.warnings.iter().any(|w| w.contains("malformed")),
            "{:?}",
            e.warnings
        );
        // Random bytes (valid UTF-8) never panic.
        let mut seed = 0x1234_5678_u32;
        for _ in 0..300 {
            let mut s = String::new();
            for _ in 0..64 {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                let c = b":\n\r,!$x1a#+ \t"[(seed >> 16) as usize % 13];
                s.push(char::from(c));
            }
            let f = AccountFiles {
                passwd: s.clone(),
                shadow: Some(s.clone()),
                group: s.clone(),
                gshadow: Some(s.clone()),
                ..Default::default()
            };
            let e = plan_accounts(
                &f,
                &LoginDefs::default(),
                &[UserSpec {
                    groups: vec!["x1a".into(), "a".into()],
                    lock_password: true,
                    ..user("x1a")
                }],
                &[("x1a".into(), "$6$a$b".into())],
            );
            for (old, new) in [(&s, &e.passwd), (&s, &e.group)] {
                let new = new.as_deref().unwrap_or(old);
                assert!(new.len() >= old.len());
            }
        }
    }

    #[test]
    fn not_utf8_is_refused() {
        let f = AccountFiles {
            passwd: format!("{PASSWD}bad:\u{FFFD}:5:5::/:/bin/sh\n"),
            ..files()
        };
        let e = plan_accounts(&f, &LoginDefs::default(), &[user("alice")], &[]);
        assert!(!e.changes());
        assert_eq!(e.warnings.len(), 1);
    }

    #[test]
    fn crash_leftovers_are_adopted() {
        // An earlier run wrote group, gshadow and shadow, then stopped before passwd.
        let f = AccountFiles {
            passwd: PASSWD.into(),
            shadow: Some(format!("{SHADOW}alice:!::0:99999:7:::\n")),
            group: format!("{GROUP}alice:x:1001:\n"),
            gshadow: Some(format!("{GSHADOW}alice:!::\n")),
            ..Default::default()
        };
        let e = plan_accounts(&f, &LoginDefs::default(), &[user("alice")], &[]);
        assert_eq!(
            appended(PASSWD, &e.passwd),
            ["alice:x:1001:1001::/home/alice:/bin/sh"]
        );
        assert_eq!(e.shadow, None);
        assert_eq!(e.group, None);
        assert_eq!(e.gshadow, None);
    }

    #[test]
    fn usergroups_off_uses_default_group() {
        let defs = parse_login_defs("USERGROUPS_ENAB no\n");
        let e = plan_accounts(&files(), &defs, &[user("alice")], &[]);
        assert_eq!(
            appended(PASSWD, &e.passwd),
            ["alice:x:1001:100::/home/alice:/bin/sh"]
        );
        assert_eq!(e.group, None);
    }

    #[test]
    fn debug_output_has_no_hashes() {
        let spec = UserSpec {
            password_hash: Some("$6$secret$hash".into()),
            ..user("alice")
        };
        let e = plan_accounts(
            &files(),
            &LoginDefs::default(),
            std::slice::from_ref(&spec),
            &[],
        );
        for s in [
            format!("{spec:?}"),
            format!("{e:?}"),
            format!("{:?}", files()),
        ] {
            assert!(!s.contains("$6$"), "{s}");
        }
    }

    #[test]
    fn salt_table() {
        for (bytes, want) in [
            ([0u8; 12], "................"),
            ([0xff; 12], "zzzzzzzzzzzzzzzz"),
            (
                [
                    0, 0x10, 0x83, 0x10, 0x51, 0x87, 0x20, 0x92, 0x8b, 0x30, 0xd3, 0x8f,
                ],
                "./0123456789ABCD",
            ),
        ] {
            assert_eq!(salt_chars(&bytes), want);
        }
    }

    #[test]
    fn hash_and_verify_table() {
        // Reference strings from glibc crypt(3) / `openssl passwd -6 -salt` (also cross-checked
        // live in tests/accounts.rs).
        let h = hash_password(b"password", &[0u8; 12]);
        assert!(h.starts_with("$6$................$"), "{h}");
        assert_eq!(h.len(), 3 + 16 + 1 + 86);
        for (pw, hash, ok) in [
            (&b"password"[..], h.as_str(), true),
            (b"Password", h.as_str(), false),
            (b"", h.as_str(), false),
            (b"password\0ignored", h.as_str(), true),
            // Drepper's SHA-crypt test vectors.
            (
                b"Hello world!",
                "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1",
                true,
            ),
            (
                b"Hello world!",
                "$6$rounds=10000$saltstringsaltst$OW1/O6BYHV6BcXZu8QVeXbDWra3Oeqh0sbHbbMCVNSnCM/UrjmM0Dp8vOuZeHBy/YTBmSK6H9qs/y3RnOaw5v.",
                true,
            ),
            (
                b"Hello world!",
                "$5$saltstring$5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZaBBGWEc5",
                true,
            ),
            (b"Hello world!", "$5$saltstring$5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZaBBGWEc6", false),
            (b"x", "$y$j9T$abc$def", false),
            (b"x", "$6$rounds=10$salt$abc", false),
            (b"x", "$6$rounds=abc$salt$abc", false),
            (b"x", "$6$0123456789abcdefg$abc", false),
            (b"x", "", false),
            (b"x", "!", false),
            (b"x", "$6$$", false),
            (b"x", "$6$a$b$c$d", false),
        ] {
            assert_eq!(verify_password(pw, hash), ok, "{hash}");
        }
    }

    /// Found by fuzz/accounts: a new gshadow line copied a broken group line's member list.
    #[test]
    fn new_gshadow_line_carries_only_member_names() {
        let files = AccountFiles {
            passwd: "root:x:0:0:root:/root:/bin/bash\n".into(),
            shadow: Some("root:*:1:0:99999:7:::\n".into()),
            group: "root:x:0:\nadm:x:4:\u{2},bob\n".into(),
            gshadow: Some("root:*::\n".into()),
            ..Default::default()
        };
        let spec = UserSpec {
            name: "new".into(),
            groups: vec!["adm".into()],
            ..Default::default()
        };
        let e = plan_accounts(&files, &LoginDefs::default(), &[spec], &[]);
        let gs = e.gshadow.unwrap();
        assert!(gs.contains("adm:!::bob,new\n"), "{gs:?}");
        assert!(!gs.contains('\u{2}'));
    }

    fn with_subids(subuid: &str) -> AccountFiles {
        AccountFiles {
            subuid: Some(subuid.into()),
            subgid: None,
            ..files()
        }
    }

    #[test]
    fn new_users_get_subordinate_ids_where_the_files_exist() {
        let e = plan_accounts(&with_subids(""), &LoginDefs::default(), &[user("new")], &[]);
        assert_eq!(e.subuid.as_deref(), Some("new:100000:65536\n"));
        // No /etc/subgid: none written, and no warning (useradd is silent too).
        assert_eq!(e.subgid, None);
        assert!(e.warnings.is_empty(), "{:?}", e.warnings);
        // A system user, or a uid above UID_MAX, gets none; a leftover line of the name is kept.
        let sys = UserSpec {
            system: true,
            ..user("svc")
        };
        let high = UserSpec {
            uid: Some(70_000),
            ..user("high")
        };
        let e = plan_accounts(
            &with_subids("new:5:7\n"),
            &LoginDefs::default(),
            &[sys, high, user("new")],
            &[],
        );
        assert_eq!(e.subuid, None);
        // SUB_UID_COUNT 0 turns them off.
        let defs = parse_login_defs("SUB_UID_COUNT 0\n");
        let e = plan_accounts(&with_subids(""), &defs, &[user("new")], &[]);
        assert_eq!(e.subuid, None);
    }

    #[test]
    fn subordinate_ranges_survive_hostile_files_in_linear_time() {
        // Huge and overflowing values, junk lines, empty ranges, CRLF: no panic, no overlap.
        let junk = format!(
            "a:{}:{}\nb:18446744073709551615:2\nc:x:1\n:1:1\nd:100000:0\ne:100000:5\r\n#c\n",
            u64::MAX - 1,
            u64::MAX
        );
        let e = plan_accounts(
            &with_subids(&junk),
            &LoginDefs::default(),
            &[user("new")],
            &[],
        );
        let out = e.subuid.unwrap();
        assert!(out.ends_with("new:100005:65536\n"), "{out}");
        // Lines that are not ranges go last, kept as they were.
        assert!(out.contains("c:x:1\n:1:1\n#c\n"), "{out}");
        // Every id taken up to SUB_UID_MAX: warned, file unchanged.
        let full = "x:100000:600000001\n";
        let e = plan_accounts(
            &with_subids(full),
            &LoginDefs::default(),
            &[user("new")],
            &[],
        );
        assert_eq!(e.subuid, None);
        assert!(
            e.warnings[0].contains("no 65536 free ids"),
            "{:?}",
            e.warnings
        );
        // 200,000 ranges (a 4 MB file), listed backwards: one sort.
        let mut big = String::new();
        for i in (0..200_000u64).rev() {
            big.push_str(&format!("u{i}:{}:1000\n", 100_000 + i * 1000));
        }
        let t = std::time::Instant::now();
        let e = plan_accounts(
            &with_subids(&big),
            &LoginDefs::default(),
            &[user("new")],
            &[],
        );
        assert!(
            t.elapsed() < std::time::Duration::from_secs(5),
            "{:?}",
            t.elapsed()
        );
        let start = 100_000 + 200_000 * 1000;
        assert!(e.subuid.unwrap().ends_with(&format!("new:{start}:65536\n")));
    }
}
