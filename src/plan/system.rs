//! System settings from `#cloud-config` (README "Cloud-config keys"): time zone, locale, time
//! servers, trusted CA certificates, fstab mounts and whether the root file system may grow.
//! Pure: plans steps from the parsed keys and the host facts, each with a why; never writes and
//! never runs a tool (that is `apply::system`). Every drive string is checked again against the
//! grammar of the file it lands in (`model::grammar`) before a step carries it.

use super::{Action, Change, Meta, Planner, Step, FILE_META};
use crate::model::grammar::{self, Esc};
use crate::model::userdata::{CloudConfig, MountEntry, UserData};
use crate::state;

/// The tz database under the root.
pub const ZONEINFO: &str = "usr/share/zoneinfo";
pub const TIMEZONE_FILE: &str = "etc/timezone";
pub const LOCALTIME: &str = "etc/localtime";
pub const LOCALE_FILE: &str = "etc/default/locale";
pub const TIMESYNCD_DROPIN: &str = "etc/systemd/timesyncd.conf.d/50-primer.conf";
pub const CHRONY_SOURCES: &str = "etc/chrony/sources.d/primer.sources";
/// chrony is installed when its daemon is.
pub const CHRONYD: &str = "usr/sbin/chronyd";
pub const CA_DIR: &str = "usr/local/share/ca-certificates";
pub const UPDATE_CA: &str = "usr/sbin/update-ca-certificates";
pub const FSTAB: &str = "etc/fstab";
pub const FSTAB_BEGIN: &str =
    "# BEGIN primer mounts (#cloud-config mounts; edits here are replaced)";
pub const FSTAB_END: &str = "# END primer mounts";
/// primer's per-machine growth setting from user data, read by `primer reclaim`
/// (`config::ReclaimConfig::settings_at`).
pub const GROW_FILE: &str = crate::state::state_path!("grow-root.json");

/// `primer-N.crt` for the N-th trusted certificate.
pub fn ca_path(n: usize) -> String {
    format!("{CA_DIR}/primer-{n}.crt")
}

/// Files the planner compares against for `cc` (and primer's own files it may remove).
pub fn wanted_files(cc: &CloudConfig) -> Vec<String> {
    let mut v = Vec::new();
    if let Some(tz) = cc
        .timezone
        .as_deref()
        .filter(|t| grammar::tz_name(t).is_ok())
    {
        v.extend([
            TIMEZONE_FILE.to_string(),
            LOCALTIME.to_string(),
            format!("{ZONEINFO}/{tz}"),
        ]);
    }
    if cc.locale.is_some() {
        v.push(LOCALE_FILE.into());
    }
    if cc.ntp.is_some() {
        v.extend([TIMESYNCD_DROPIN.to_string(), CHRONY_SOURCES.to_string()]);
    }
    if cc.ca_certs.is_some() {
        v.extend((0..crate::model::userdata::MAX_CA_CERTS).map(ca_path));
    }
    if cc.mounts.is_some() {
        v.push(FSTAB.into());
    }
    v.push(GROW_FILE.into());
    v
}

/// Tools whose presence matters (looked up, never read).
pub fn wanted_present(cc: &CloudConfig) -> Vec<String> {
    let mut v = Vec::new();
    if cc.ntp.is_some() {
        v.push(CHRONYD.into());
    }
    if cc.ca_certs.is_some() {
        v.push(UPDATE_CA.into());
    }
    v
}

/// `/etc/default/locale` with `LANG=locale`: an existing `LANG=` line replaced, every other
/// line kept as it is (as `update-locale LANG=…` does).
pub fn render_locale(existing: &str, locale: &str) -> String {
    let line = format!("LANG={locale}");
    let mut out: Vec<&str> = Vec::new();
    let mut done = false;
    for l in existing.lines() {
        if l.trim_start().starts_with("LANG=") {
            if !done {
                out.push(&line);
                done = true;
            }
        } else {
            out.push(l);
        }
    }
    if !done {
        out.push(&line);
    }
    let mut s = out.join("\n");
    s.push('\n');
    s
}

/// The timesyncd drop-in: every server and pool on `NTP=` (timesyncd does not tell them apart).
pub fn render_timesyncd(servers: &[String], pools: &[String]) -> String {
    let all: Vec<&str> = servers.iter().chain(pools).map(String::as_str).collect();
    format!(
        "# written by primer from #cloud-config ntp\n[Time]\nNTP={}\n",
        all.join(" ")
    )
}

/// chrony's sources file: `server NAME iburst` and `pool NAME iburst`.
pub fn render_chrony(servers: &[String], pools: &[String]) -> String {
    let mut s = String::from("# written by primer from #cloud-config ntp\n");
    for x in servers {
        s.push_str(&format!("server {x} iburst\n"));
    }
    for x in pools {
        s.push_str(&format!("pool {x} iburst\n"));
    }
    s
}

/// `/etc/fstab` with primer's block (between [`FSTAB_BEGIN`] and [`FSTAB_END`]) holding
/// `entries`: an existing block replaced in place, else appended; every other line kept byte
/// for byte. No entries: the block is removed.
/// Whether primer's block in `existing` is whole: every begin marker closed by an end marker
/// before the next begin, no stray end marker.
fn fstab_markers_ok(existing: &str) -> Result<(), String> {
    let mut inside = false;
    for l in existing.lines() {
        if l == FSTAB_BEGIN {
            if inside {
                return Err(format!("holds {FSTAB_BEGIN:?} twice without {FSTAB_END:?}"));
            }
            inside = true;
        } else if l == FSTAB_END {
            if !inside {
                return Err(format!("holds {FSTAB_END:?} without {FSTAB_BEGIN:?}"));
            }
            inside = false;
        }
    }
    if inside {
        return Err(format!("holds {FSTAB_BEGIN:?} without {FSTAB_END:?}"));
    }
    Ok(())
}

pub fn render_fstab(existing: &str, entries: &[MountEntry]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut block: Vec<String> = Vec::new();
    if !entries.is_empty() {
        block.push(FSTAB_BEGIN.to_string());
        for e in entries {
            block.push(format!(
                "{}\t{}\t{}\t{}\t{}\t{}",
                e.spec, e.file, e.vfstype, e.mntops, e.freq, e.passno
            ));
        }
        block.push(FSTAB_END.to_string());
    }
    let mut inside = false;
    let mut placed = false;
    for l in existing.lines() {
        if l == FSTAB_BEGIN {
            inside = true;
            if !placed {
                out.append(&mut block);
                placed = true;
            }
        } else if inside {
            if l == FSTAB_END {
                inside = false;
            }
        } else {
            out.push(l.to_string());
        }
    }
    if !placed {
        out.append(&mut block);
    }
    let mut s = out.join("\n");
    if !s.is_empty() {
        s.push('\n');
    }
    s
}

/// Why an fstab entry cannot be written, checked again here whatever the parser did.
fn check_mount(e: &MountEntry) -> Result<Option<String>, String> {
    for (name, f) in [
        ("device", &e.spec),
        ("mount point", &e.file),
        ("type", &e.vfstype),
        ("options", &e.mntops),
        ("dump", &e.freq),
        ("pass", &e.passno),
    ] {
        grammar::fstab_field(f).map_err(|err| format!("{name} {err}"))?;
    }
    for (name, f) in [("dump", &e.freq), ("pass", &e.passno)] {
        if !(f.len() <= 3 && f.bytes().all(|b| b.is_ascii_digit())) {
            return Err(format!("{name} field {} is not a small number", Esc(f)));
        }
    }
    if e.vfstype == "swap" || e.file == "none" {
        return Ok(None);
    }
    if !e.file.starts_with('/') {
        return Err(format!(
            "mount point {} is not an absolute path",
            Esc(&e.file)
        ));
    }
    if e.file == "/" {
        return Err("mount point / is the root file system".to_string());
    }
    super::placement::target_path(&e.file, super::placement::Use::File).map(Some)
}

impl Planner<'_> {
    /// Every system key of `ud`'s cloud-config; absent keys plan nothing (the image's
    /// settings stay), except the growth setting, which follows the current user data.
    pub(super) fn plan_system(&mut self, instance_id: &str, ud: &UserData) {
        let cc = &ud.cloud_config;
        if let Some(tz) = cc.timezone.as_deref() {
            self.plan_timezone(tz);
        }
        if let Some(l) = cc.locale.as_deref() {
            self.plan_locale(l);
        }
        if let Some(ntp) = &cc.ntp {
            self.plan_ntp(ntp);
        }
        if let Some(ca) = &cc.ca_certs {
            self.plan_ca_certs(&ca.trusted);
        }
        if let Some(m) = &cc.mounts {
            self.plan_mounts(m);
        }
        self.plan_grow(instance_id, cc.grow_root);
    }

    /// A step that does nothing, with a why (and the same text as a warning).
    fn skip_step(&mut self, id: &str, field: &str, why: String, warn: bool) {
        if warn {
            self.warnings.warn("user-data", field, why.clone());
        }
        self.steps.push(Step {
            id: id.into(),
            change: Change::Skip,
            action: Action::Nothing,
            why: why.into(),
            input: None,
        });
    }

    /// The meta of an existing file, else 0644 root.
    fn meta_of(&self, path: &str) -> Meta {
        self.facts.files.get(path).map_or(FILE_META, |f| f.meta)
    }

    fn plan_timezone(&mut self, tz: &str) {
        if let Err(e) = grammar::tz_name(tz) {
            return self.skip_step(
                "timezone",
                "timezone",
                format!("time zone {}: {e}; left as it is", Esc(tz)),
                true,
            );
        }
        let zone = format!("{ZONEINFO}/{tz}");
        let Some(zone_fact) = self.facts.files.get(&zone) else {
            return self.skip_step(
                "timezone",
                "timezone",
                format!("time zone {tz}: /{zone} is not a file of the target; left as it is"),
                true,
            );
        };
        // zone.tab, tzdata.zi and friends are files there too, but not zones: glibc would
        // silently fall back to UTC.
        if !zone_fact.content.starts_with(b"TZif") {
            return self.skip_step(
                "timezone",
                "timezone",
                format!(
                    "time zone {tz}: /{zone} is not a compiled time zone (TZif); left as it is"
                ),
                true,
            );
        }
        let zone_bytes = zone_fact.content.clone();
        let input = Some(state::sha256_hex(tz.as_bytes()));
        let what = format!("time zone {tz} (user-data timezone)");
        self.file_step(
            "timezone",
            TIMEZONE_FILE,
            format!("{tz}\n").into_bytes(),
            self.meta_of(TIMEZONE_FILE),
            input.clone(),
            &what,
            true,
        );
        let link = format!("/{zone}");
        let current = self.facts.files.get(LOCALTIME).map(|f| &f.content);
        let (change, why) = match current {
            // The link's target (or a copy of it) is this zone: nothing to do.
            Some(c) if *c == zone_bytes => (
                Change::Unchanged,
                format!("{what}: /{LOCALTIME} is already {link}"),
            ),
            _ if input
                .as_deref()
                .is_some_and(|i| self.applied_before("localtime", i)) =>
            {
                (
                    Change::Skip,
                    format!("{what}: already applied for this instance and /{LOCALTIME} was changed since; local edits kept"),
                )
            }
            Some(_) => (Change::Update, format!("{what}: /{LOCALTIME} -> {link}")),
            None => (Change::Create, format!("{what}: /{LOCALTIME} -> {link}")),
        };
        self.steps.push(Step {
            id: "localtime".into(),
            change,
            action: Action::Symlink {
                path: LOCALTIME.into(),
                target: link,
            },
            why: why.into(),
            input: input.map(Into::into),
        });
    }

    fn plan_locale(&mut self, locale: &str) {
        if let Err(e) = grammar::locale_name(locale) {
            return self.skip_step(
                "locale",
                "locale",
                format!("locale {}: {e}; left as it is", Esc(locale)),
                true,
            );
        }
        let existing = self
            .facts
            .files
            .get(LOCALE_FILE)
            .map(|f| String::from_utf8_lossy(&f.content).into_owned())
            .unwrap_or_default();
        self.file_step(
            "locale",
            LOCALE_FILE,
            render_locale(&existing, locale).into_bytes(),
            self.meta_of(LOCALE_FILE),
            Some(state::sha256_hex(locale.as_bytes())),
            &format!("locale {locale} (user-data locale; not generated)"),
            true,
        );
    }

    /// Removes a file primer owns when it exists.
    fn remove_own(&mut self, id: &str, path: &str, why: &str) {
        if self.facts.files.contains_key(path) {
            self.steps.push(Step {
                id: id.into(),
                change: Change::Remove,
                action: Action::RemoveFile { path: path.into() },
                why: format!("{why}: /{path} removed").into(),
                input: None,
            });
        }
    }

    fn plan_ntp(&mut self, ntp: &crate::model::userdata::Ntp) {
        let bad = ntp
            .servers
            .iter()
            .chain(&ntp.pools)
            .find(|s| grammar::ntp_server(s).is_err());
        if let Some(b) = bad {
            return self.skip_step(
                "ntp",
                "ntp",
                format!(
                    "time server {} is not an address or DNS name; time servers left as they are",
                    Esc(b)
                ),
                true,
            );
        }
        if !ntp.enabled || (ntp.servers.is_empty() && ntp.pools.is_empty()) {
            let why = if ntp.enabled {
                "user-data ntp gives no servers or pools"
            } else {
                "user-data ntp.enabled is false"
            };
            self.remove_own("ntp-timesyncd", TIMESYNCD_DROPIN, why);
            self.remove_own("ntp-chrony", CHRONY_SOURCES, why);
            return;
        }
        let input = Some(state::sha256_hex(
            format!("{:?}{:?}", ntp.servers, ntp.pools).as_bytes(),
        ));
        let n = ntp.servers.len() + ntp.pools.len();
        self.file_step(
            "ntp-timesyncd",
            TIMESYNCD_DROPIN,
            render_timesyncd(&ntp.servers, &ntp.pools).into_bytes(),
            FILE_META,
            input.clone(),
            &format!("{n} time server(s) for systemd-timesyncd (user-data ntp)"),
            true,
        );
        if self.facts.present.contains(CHRONYD) {
            self.file_step(
                "ntp-chrony",
                CHRONY_SOURCES,
                render_chrony(&ntp.servers, &ntp.pools).into_bytes(),
                FILE_META,
                input,
                &format!("{n} time server(s) for chrony (user-data ntp)"),
                true,
            );
        } else {
            self.remove_own("ntp-chrony", CHRONY_SOURCES, "chrony is not installed");
        }
    }

    fn plan_ca_certs(&mut self, trusted: &[String]) {
        let mut input_all = String::new();
        let mut count = 0;
        for (i, pem) in trusted.iter().enumerate() {
            if let Err(e) = grammar::pem_certificates(pem) {
                self.warnings.warn(
                    "user-data",
                    &format!("ca_certs.trusted[{i}]"),
                    format!("not PEM certificate blocks: {e}; not installed"),
                );
                continue;
            }
            let path = ca_path(count);
            let input = state::sha256_hex(pem.as_bytes());
            input_all.push_str(&input);
            self.file_step(
                &format!("ca-cert:{count}"),
                &path,
                pem.as_bytes().to_vec(),
                FILE_META,
                Some(input),
                &format!("trusted CA certificate {} (user-data ca_certs)", count + 1),
                // An administrator who deletes or edits the certificate (to stop trusting
                // it) is not overridden at every boot while the drive asks the same.
                true,
            );
            count += 1;
        }
        for n in count..crate::model::userdata::MAX_CA_CERTS {
            self.remove_own(
                &format!("ca-cert:{n}"),
                &ca_path(n),
                "no longer in user-data ca_certs",
            );
        }
        let input = state::sha256_hex(input_all.as_bytes());
        let acted = self
            .steps
            .iter()
            .any(|s| s.id.starts_with("ca-cert:") && s.change.acts());
        if !acted && self.applied_before("ca-certs-update", &input) {
            self.steps.push(Step {
                id: "ca-certs-update".into(),
                change: Change::Unchanged,
                action: Action::Nothing,
                why: "system certificate store already holds user-data ca_certs".into(),
                input: Some(input.into()),
            });
            return;
        }
        if !self.facts.live {
            let why = format!(
                "certificates in /{CA_DIR}; not the running system: update-ca-certificates \
                 runs when the image boots (or run it in the image)"
            );
            return self.skip_step("ca-certs-update", "ca_certs", why, false);
        }
        if !self.facts.present.contains(UPDATE_CA) {
            let why = format!(
                "certificates in /{CA_DIR}, but /{UPDATE_CA} is not installed: the system \
                 store is not updated"
            );
            return self.skip_step("ca-certs-update", "ca_certs", why, true);
        }
        self.steps.push(Step {
            id: "ca-certs-update".into(),
            change: Change::Update,
            action: Action::UpdateCaCertificates {
                tool: UPDATE_CA.into(),
            },
            why: format!("{count} user-data ca_certs certificate(s): update-ca-certificates")
                .into(),
            input: Some(input.into()),
        });
    }

    fn plan_mounts(&mut self, entries: &[MountEntry]) {
        let mut ok: Vec<MountEntry> = Vec::new();
        let mut dirs: Vec<String> = Vec::new();
        // Warnings name the entry by its device and mount point: `entries` is the parsed
        // list, whose positions need not be the user data's.
        let field = "mounts";
        for e in entries {
            match check_mount(e) {
                Err(why) => self.warnings.warn(
                    "user-data",
                    field,
                    format!(
                        "entry {} {}: {why}; entry not written",
                        Esc(&e.spec),
                        Esc(&e.file)
                    ),
                ),
                Ok(_) if ok.iter().any(|o| o.file == e.file && e.file != "none") => {
                    self.warnings.warn(
                        "user-data",
                        field,
                        format!(
                            "mount point {} given twice; the first entry is kept",
                            Esc(&e.file)
                        ),
                    )
                }
                Ok(dir) => {
                    dirs.extend(dir);
                    ok.push(e.clone());
                }
            }
        }
        // The file is edited as text around primer's block: a file that is not UTF-8, or whose
        // block lost a marker, is left alone (a missing END would drop every line after it).
        let existing = match self.facts.files.get(FSTAB).map(|f| &f.content) {
            None => String::new(),
            Some(c) => match std::str::from_utf8(c)
                .map_err(|_| "is not UTF-8".to_string())
                .and_then(|t| fstab_markers_ok(t).map(|()| t))
            {
                Ok(t) => t.to_string(),
                Err(why) => {
                    return self.skip_step(
                        "fstab",
                        "mounts",
                        format!("/{FSTAB} {why}; left as it is (user-data mounts not applied)"),
                        true,
                    )
                }
            },
        };
        let content = render_fstab(&existing, &ok);
        self.file_step(
            "fstab",
            FSTAB,
            content.into_bytes(),
            self.meta_of(FSTAB),
            Some(state::sha256_hex(format!("{ok:?}").as_bytes())),
            &format!(
                "{} fstab entr(ies) in primer's block (user-data mounts)",
                ok.len()
            ),
            true,
        );
        if dirs.is_empty() {
            return;
        }
        let input = state::sha256_hex(dirs.join("\n").as_bytes());
        let (change, why) = if self.applied_before("mount-points", &input) {
            (
                Change::Unchanged,
                format!(
                    "{} mount point(s) made on this instance's first run",
                    dirs.len()
                ),
            )
        } else {
            (
                Change::Create,
                format!(
                    "{} mount point(s) made where missing: /{}",
                    dirs.len(),
                    dirs.join(", /")
                ),
            )
        };
        self.steps.push(Step {
            id: "mount-points".into(),
            change,
            action: Action::MakeDirs { paths: dirs },
            why: why.into(),
            input: Some(input.into()),
        });
    }

    /// `growpart`/`resize_rootfs`: growth off for this instance is a small file `primer
    /// reclaim` reads; growth allowed (or not mentioned) removes it.
    fn plan_grow(&mut self, instance_id: &str, grow: Option<bool>) {
        if grow != Some(false) {
            self.remove_own(
                "grow-root",
                GROW_FILE,
                "user-data no longer turns root growth off",
            );
            return;
        }
        #[derive(serde::Serialize)]
        struct Doc<'a> {
            instance_id: &'a str,
            grow_root: bool,
        }
        // A string and a bool: written whole by the pretty writer (no fallback linked in).
        let content = crate::state::pretty_json_fast(&Doc {
            instance_id,
            grow_root: false,
        })
        .unwrap_or_default();
        self.file_step(
            "grow-root",
            GROW_FILE,
            content,
            Meta {
                mode: 0o600,
                uid: 0,
                gid: 0,
            },
            None,
            "root growth off (user-data growpart mode off / resize_rootfs false)",
            false,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locale_and_fstab_rendering() {
        assert_eq!(render_locale("", "de_DE.UTF-8"), "LANG=de_DE.UTF-8\n");
        assert_eq!(
            render_locale("# x\nLANG=C\nLC_TIME=C\nLANG=en\n", "fr_FR.UTF-8"),
            "# x\nLANG=fr_FR.UTF-8\nLC_TIME=C\n"
        );
        let e = MountEntry {
            spec: "/dev/vdb".into(),
            file: "/data".into(),
            vfstype: "auto".into(),
            mntops: "defaults,nofail".into(),
            freq: "0".into(),
            passno: "2".into(),
        };
        let base = "UUID=1 / ext4 defaults 0 1\n";
        let once = render_fstab(base, std::slice::from_ref(&e));
        assert_eq!(
            once,
            format!(
                "{base}{FSTAB_BEGIN}\n/dev/vdb\t/data\tauto\tdefaults,nofail\t0\t2\n{FSTAB_END}\n"
            )
        );
        assert_eq!(render_fstab(&once, std::slice::from_ref(&e)), once);
        assert_eq!(render_fstab(&once, &[]), base);
        let bad = MountEntry {
            file: "/da ta".into(),
            ..e.clone()
        };
        assert!(check_mount(&bad).is_err());
        let esc = MountEntry {
            file: "/proc/x".into(),
            ..e.clone()
        };
        assert!(check_mount(&esc).is_err());
        assert_eq!(check_mount(&e), Ok(Some("data".into())));
    }

    #[test]
    fn time_servers() {
        let s = vec!["ntp.example.org".to_string(), "192.0.2.1".to_string()];
        let p = vec!["pool.ntp.org".to_string()];
        assert_eq!(
            render_timesyncd(&s, &p),
            "# written by primer from #cloud-config ntp\n[Time]\nNTP=ntp.example.org 192.0.2.1 pool.ntp.org\n"
        );
        assert!(
            render_chrony(&s, &p).ends_with("server 192.0.2.1 iburst\npool pool.ntp.org iburst\n")
        );
    }
    fn plan_with(ud: &str, facts: &crate::facts::HostFacts) -> super::super::Plan {
        use crate::model::{Blob, Format, Instance};
        let mut i = Instance::new(Format::NoCloud, "seed", "iid-1");
        i.user_data = Some(Blob::new(ud));
        let d = crate::media::DriveFiles::new("/dev/x", "iso9660");
        super::super::plan(&i, &d, facts, &super::super::Policy::default())
    }

    fn step<'a>(p: &'a super::super::Plan, id: &str) -> &'a Step {
        p.steps.iter().find(|s| s.id == id).unwrap()
    }

    #[test]
    fn update_ca_certificates_runs_live_once_per_certificate_list() {
        let pem = "-----BEGIN CERTIFICATE-----\n      MAMCAQA=\n      -----END CERTIFICATE-----";
        let ud = format!("#cloud-config\nca_certs:\n  trusted:\n    - |\n      {pem}\n");
        let mut facts = crate::facts::HostFacts {
            live: true,
            ..Default::default()
        };
        // No tool in the target: skipped with a warning.
        let p = plan_with(&ud, &facts);
        assert_eq!(step(&p, "ca-cert:0").change, Change::Create);
        assert_eq!(step(&p, "ca-certs-update").change, Change::Skip);
        assert!(p.warnings.warnings.iter().any(|w| w.field == "ca_certs"));
        facts.present.insert(UPDATE_CA.into());
        let p = plan_with(&ud, &facts);
        let s = step(&p, "ca-certs-update");
        assert_eq!(s.change, Change::Update);
        assert!(matches!(&s.action, Action::UpdateCaCertificates { tool } if tool == UPDATE_CA));
        // Applied: the certificate in place and the update recorded -> unchanged.
        let Action::WriteFile { content, .. } = &step(&p, "ca-cert:0").action else {
            panic!()
        };
        facts.files.insert(
            ca_path(0),
            crate::facts::FileFact {
                content: content.to_vec(),
                meta: FILE_META,
                measured: None,
            },
        );
        let mut steps = crate::state::Steps::default();
        steps.insert(
            "ca-certs-update".to_string(),
            s.input.clone().unwrap().to_string(),
        );
        facts.record = Some(crate::state::Record {
            instance_id: "iid-1".into(),
            format: String::new(),
            version: String::new(),
            drive_sha256: String::new(),
            steps,
        });
        let p = plan_with(&ud, &facts);
        assert_eq!(step(&p, "ca-cert:0").change, Change::Unchanged);
        assert_eq!(step(&p, "ca-certs-update").change, Change::Unchanged);
    }

    #[test]
    fn fstab_with_a_broken_block_is_refused() {
        let b = FSTAB_BEGIN;
        let e = FSTAB_END;
        assert!(fstab_markers_ok(&format!(
            "UUID=x / ext4 defaults 0 1\n{b}\na b c d 0 0\n{e}\n"
        ))
        .is_ok());
        assert!(fstab_markers_ok("UUID=x / ext4 defaults 0 1\n").is_ok());
        for bad in [
            format!("{b}\na b c d 0 0\nUUID=x / ext4 defaults 0 1\n"),
            format!("{b}\n{b}\n{e}\n"),
            format!("{e}\nUUID=x / ext4 defaults 0 1\n"),
        ] {
            assert!(fstab_markers_ok(&bad).is_err(), "{bad}");
        }
    }
}
