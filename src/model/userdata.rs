//! User data, typed: the scripts, the cloud-config subset primer understands and the boothooks a
//! user-data (and vendor-data) blob holds, after decompression, MIME splitting and merging
//! (`source::userdata` builds it). Pure data: no I/O, no parsing.
//!
//! Secrets (plain-text passwords) are [`Secret`]s; script and file contents print as a size and a
//! SHA-256 prefix in `Debug` and `Serialize`, so the model can be shown and logged.

use std::fmt;

use serde::{Serialize, Serializer};
use sha2::{Digest, Sha256};

use super::{Bytes, Secret};

/// Everything primer took from user data and vendor data.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct UserData {
    /// `#!` scripts (`text/x-shellscript`), run once per instance: vendor scripts first (as
    /// cloud-init runs `scripts-vendor` before `scripts-user`), then user scripts, each in
    /// document order.
    pub scripts: Vec<Script>,
    /// The merged cloud-config (user data over vendor data, key by key).
    pub cloud_config: CloudConfig,
    /// `#cloud-boothook` parts: recognised and reported unsupported (primer does not run them).
    pub boothooks: Vec<Script>,
    /// Parts with a Windows header (`#ps1`, `#ps1_sysnative`, `#ps1_x86`, `rem cmd`,
    /// `<powershell>`, `<script>`), whole user-data or MIME parts, gzip'd or not, in the same
    /// order as `scripts`: the Windows plan runs those its interpreters know; Linux ignores them
    /// (the parser warns).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub windows_scripts: Vec<Script>,
}

impl UserData {
    pub fn is_empty(&self) -> bool {
        *self == UserData::default()
    }
}

/// Where a part came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Origin {
    UserData,
    VendorData,
}

/// A script (or boothook) part.
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct Script {
    /// A safe file name (`[A-Za-z0-9._-]`, not starting with a dot, at most 64 bytes), unique
    /// within one [`UserData`] and deterministic: the MIME filename sanitised, else `part-NNN`
    /// (the part's number within its origin's data, from 001).
    pub name: String,
    pub origin: Origin,
    /// The bytes as given (after gzip and transfer decoding), not necessarily UTF-8: a slice of
    /// the drive file's buffer when they were not decoded (held once, not copied).
    #[serde(serialize_with = "bytes_summary")]
    pub content: Bytes,
}

impl fmt::Debug for Script {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Script")
            .field("name", &self.name)
            .field("origin", &self.origin)
            .field("content", &Summary(&self.content))
            .finish()
    }
}

/// The cloud-config keys primer understands. Every other key is reported (one warning per part)
/// and ignored. Absent keys are `None` or empty.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CloudConfig {
    pub hostname: Option<String>,
    pub fqdn: Option<String>,
    pub prefer_fqdn_over_hostname: Option<bool>,
    /// `user`: settings for the distribution's default user (a string renames it). Always has
    /// `default_user` set.
    pub user: Option<CcUser>,
    /// `users`, in order, deduplicated by name (the first entry of a name is kept).
    pub users: Vec<CcUser>,
    /// Whether `users` was given at all (even empty). cloud-init creates the distribution's
    /// default user when `users` is absent, or when it lists `default`; an explicit list
    /// without `default` means no default user.
    pub users_given: bool,
    pub ssh_authorized_keys: Vec<String>,
    pub write_files: Vec<WriteFile>,
    pub runcmd: Vec<Command>,
    pub bootcmd: Vec<Command>,
    /// `password`: the default user's password (plain text or a crypt hash, as given).
    pub password: Option<Secret>,
    pub chpasswd: Chpasswd,
    /// `ssh_pwauth`; `None` when absent or `unchanged`.
    pub ssh_pwauth: Option<bool>,
    /// `ssh_deletekeys`: remove the image's SSH host keys on the instance's first run (`None`:
    /// absent, the configuration decides). Shown only when given, so the model of a user-data
    /// without it reads as before.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssh_deletekeys: Option<bool>,
    /// `ssh_genkeytypes`: host key types to create, each one of `rsa`, `ecdsa`, `ed25519`, in
    /// order, each once (`None`: absent, the configuration decides). Shown only when given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssh_genkeytypes: Option<Vec<String>>,
    /// `disable_root`: root's keys get `disable_root_opts` (`None`: absent; what happens is
    /// the configuration's `disable_root`). Shown only when given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disable_root: Option<bool>,
    /// `disable_root_opts`: the options put before root's keys, as given (checked by the
    /// planner as an `authorized_keys` options list). Shown only when given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disable_root_opts: Option<String>,
    // ---- system keys (README "Cloud-config keys"); each shown only when given ----
    /// `manage_etc_hosts`: how primer treats `/etc/hosts` (`None`: primer's default, the
    /// marked `127.0.1.1` line).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manage_etc_hosts: Option<ManageEtcHosts>,
    /// `preserve_hostname: true`: the host name is the image's; primer leaves it alone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preserve_hostname: Option<bool>,
    /// `timezone`: a tz database name (`grammar::tz_name`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// `locale`: `LANG` for `/etc/default/locale` (`grammar::locale_name`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
    /// `ntp`: time servers for timesyncd and chrony.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ntp: Option<Ntp>,
    /// `ca_certs` (or `ca-certs`): certificates added to the system store.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_certs: Option<CaCerts>,
    /// `mounts`, every entry completed by `mount_default_fields`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mounts: Option<Vec<MountEntry>>,
    /// Whether the root file system may grow, from `growpart` and `resize_rootfs` (`Some(false)`
    /// when either turns growth off).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grow_root: Option<bool>,
}

/// Most `ca_certs.trusted` entries kept (`primer-0.crt` … `primer-31.crt`).
pub const MAX_CA_CERTS: usize = 32;

/// `manage_etc_hosts`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ManageEtcHosts {
    /// `true` / `template`: primer writes the whole file on every run.
    Template,
    /// `localhost`: primer keeps its `127.0.1.1` line current on every run, the rest untouched.
    Localhost,
    /// `false`: `/etc/hosts` is left alone.
    Off,
}

/// `ntp`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Ntp {
    /// `enabled` (cloud-init's default is `true` once `ntp` is given).
    pub enabled: bool,
    /// `servers`: addresses or DNS names, validated, in order, each once.
    pub servers: Vec<String>,
    /// `pools`: as `servers`.
    pub pools: Vec<String>,
}

/// `ca_certs`.
#[derive(Clone, Default, PartialEq, Eq, Serialize)]
pub struct CaCerts {
    /// `trusted`: PEM texts, each one or more `CERTIFICATE` blocks, validated.
    #[serde(serialize_with = "texts_summary")]
    pub trusted: Vec<String>,
}

impl fmt::Debug for CaCerts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s: Vec<Summary> = self.trusted.iter().map(|t| Summary(t.as_bytes())).collect();
        f.debug_struct("CaCerts").field("trusted", &s).finish()
    }
}

fn texts_summary<S: Serializer>(t: &[String], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(t.iter().map(|x| Summary(x.as_bytes()).to_string()))
}

/// One `mounts` entry: the six fields of an fstab line, each checked by
/// `grammar::fstab_field`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MountEntry {
    pub spec: String,
    pub file: String,
    pub vfstype: String,
    pub mntops: String,
    pub freq: String,
    pub passno: String,
}

/// One `users` entry (or the `user` key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CcUser {
    /// The user name; `default` for the default-user marker unless `user:` renamed it.
    pub name: String,
    /// The `default` marker: this entry stands for the distribution's default user (the string
    /// `default`, a `{name: default, ...}` entry, or the `user` key); the other fields override
    /// its settings.
    pub default_user: bool,
    pub gecos: Option<String>,
    /// Supplementary groups (`"a, b"` or a list).
    pub groups: Vec<String>,
    pub shell: Option<String>,
    /// sudoers rules; empty for none (`false`, null or absent).
    pub sudo: Vec<String>,
    /// Lock the password (default `true`, as cloud-init).
    pub lock_passwd: bool,
    /// `passwd`: a crypt hash.
    pub passwd: Option<String>,
    /// `hashed_passwd`: a crypt hash.
    pub hashed_passwd: Option<String>,
    pub plain_text_passwd: Option<Secret>,
    pub ssh_authorized_keys: Vec<String>,
    pub primary_group: Option<String>,
    pub homedir: Option<String>,
    pub system: bool,
    pub no_create_home: bool,
    pub uid: Option<u32>,
}

impl Default for CcUser {
    fn default() -> Self {
        CcUser {
            name: String::new(),
            default_user: false,
            gecos: None,
            groups: Vec::new(),
            shell: None,
            sudo: Vec::new(),
            lock_passwd: true,
            passwd: None,
            hashed_passwd: None,
            plain_text_passwd: None,
            ssh_authorized_keys: Vec::new(),
            primary_group: None,
            homedir: None,
            system: false,
            no_create_home: false,
            uid: None,
        }
    }
}

impl CcUser {
    /// The name cloud-config uses for the default-user marker.
    pub const DEFAULT_NAME: &'static str = "default";

    /// The bare `default` marker.
    pub fn default_marker() -> Self {
        CcUser {
            name: Self::DEFAULT_NAME.to_string(),
            default_user: true,
            ..CcUser::default()
        }
    }

    /// A user with only a name (every other field at cloud-init's default).
    pub fn named(name: impl Into<String>) -> Self {
        CcUser {
            name: name.into(),
            ..CcUser::default()
        }
    }

    pub fn is_default(&self) -> bool {
        self.default_user
    }
}

/// A `write_files` entry.
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct WriteFile {
    pub path: String,
    /// Decoded content (`encoding` applied).
    /// A large content of a cloud-config kept on the device stays there (`Bytes::derived`).
    #[serde(serialize_with = "digest_summary")]
    pub content: Bytes,
    /// Mode bits (`0644` and `'0644'` are 420); `None` when not given (cloud-init uses 0644).
    pub permissions: Option<u32>,
    /// `user:group` (or `user`), as given; `None` when not given (cloud-init uses root:root).
    pub owner: Option<String>,
    pub append: bool,
    /// Write in the final stage, after users are created.
    pub defer: bool,
}

impl fmt::Debug for WriteFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriteFile")
            .field("path", &self.path)
            .field("content", &DigestSummary(&self.content))
            .field("permissions", &self.permissions.map(Octal))
            .field("owner", &self.owner)
            .field("append", &self.append)
            .field("defer", &self.defer)
            .finish()
    }
}

/// A `runcmd` / `bootcmd` item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Command {
    /// A string item: run by `sh -c`.
    Shell(String),
    /// A list item: run as argv, no shell.
    Argv(Vec<String>),
}

/// `chpasswd`: the old `list:` form and the new `users:` form, merged in that order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Chpasswd {
    pub users: Vec<(String, PasswordValue)>,
    /// `expire` (cloud-init's default is `true` when absent).
    pub expire: Option<bool>,
}

/// A password to set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PasswordValue {
    Plain(Secret),
    /// A crypt hash (`$6$...`), set as is.
    Hash(String),
    /// cloud-init's `RANDOM` / `R`: a generated password. Not supported: the parser reports
    /// such entries and skips them, so they do not appear in a parsed [`Chpasswd`].
    Random,
}

/// Mode bits shown in octal.
struct Octal(u32);

impl fmt::Debug for Octal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0o{:o}", self.0)
    }
}

/// Bytes shown as a size and the first 12 hex digits of their SHA-256.
struct Summary<'a>(&'a [u8]);

impl fmt::Display for Summary<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let digest = Sha256::digest(self.0);
        write!(f, "<{} bytes, sha256 ", self.0.len())?;
        for b in &digest[..6] {
            write!(f, "{b:02x}")?;
        }
        f.write_str(">")
    }
}

impl fmt::Debug for Summary<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// [`Summary`] of a [`Bytes`] from its digest: content kept on the device is not read whole.
struct DigestSummary<'a>(&'a Bytes);

impl fmt::Display for DigestSummary<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let digest = self.0.sha256();
        write!(f, "<{} bytes, sha256 ", self.0.len())?;
        for b in &digest[..6] {
            write!(f, "{b:02x}")?;
        }
        f.write_str(">")
    }
}

impl fmt::Debug for DigestSummary<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

fn digest_summary<S: Serializer>(b: &Bytes, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&DigestSummary(b))
}

fn bytes_summary<B: AsRef<[u8]>, S: Serializer>(b: &B, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&Summary(b.as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contents_and_secrets_print_as_summaries() {
        let mut ud = UserData::default();
        assert!(ud.is_empty());
        ud.scripts.push(Script {
            name: "part-001".into(),
            origin: Origin::VendorData,
            content: b"#!/bin/sh\necho token-xyz\n".to_vec().into(),
        });
        ud.cloud_config.password = Some(Secret::new("pw-abc"));
        ud.cloud_config.write_files.push(WriteFile {
            path: "/etc/x".into(),
            content: b"file-body".to_vec().into(),
            permissions: Some(0o644),
            owner: None,
            append: false,
            defer: false,
        });
        ud.cloud_config
            .chpasswd
            .users
            .push(("root".into(), PasswordValue::Plain(Secret::new("pw-def"))));
        let dbg = format!("{ud:?}");
        let json = serde_json::to_string(&ud).unwrap();
        for out in [&dbg, &json] {
            for s in ["token-xyz", "pw-abc", "pw-def", "file-body"] {
                assert!(!out.contains(s), "{s} in {out}");
            }
        }
        assert!(dbg.contains("0o644"), "{dbg}");
        assert!(json.contains("\"origin\":\"vendor-data\""), "{json}");
        assert!(json.contains("<9 bytes, sha256 "), "{json}");
        assert!(
            json.contains("{\"plain\":\"<redacted 6 bytes>\"}"),
            "{json}"
        );
    }

    #[test]
    fn user_defaults_follow_cloud_init() {
        let u = CcUser::named("bob");
        assert!(u.lock_passwd && !u.default_user && !u.system);
        let d = CcUser::default_marker();
        assert!(d.is_default() && d.name == "default" && d.lock_passwd);
    }
}
