//! Fuzz harnesses for the source parsers and user-data planning, shared by the cargo-fuzz targets
//! (`fuzz/`) and the test that replays their seed corpora (`tests/fuzz_seeds.rs`), so both run
//! the same code. Above both `source` and `plan`, which it exercises. Each takes
//! arbitrary bytes, builds an in-memory drive, parses it, and checks the invariants: no panic,
//! every error names the device, every warning names its file, the model serialises.
//! Not used by the agent itself; does no I/O.

use crate::media::DriveFiles;
use crate::model::userdata::{Origin, PasswordValue, UserData};
use crate::model::{Instance, Report};

use crate::source::userdata::{parse_user_data, UserDataLimits, USER_DATA_FILE};
use crate::source::{parse_drive, SourceError};

/// The device name harness drives carry; every error must mention it.
pub const DEVICE: &str = "fuzz";

/// Files a CloudStack input is split into (chunk `i` of the input, split at NUL bytes, becomes
/// file `i`; empty chunks are absent files).
pub const CLOUDSTACK_FILES: &[&str] = &[
    "cloudstack/metadata/vm-id.txt",
    "cloudstack/metadata/instance_id.txt",
    "cloudstack/metadata/local-hostname.txt",
    "cloudstack/metadata/public-keys.txt",
    "cloudstack/metadata/service-offering.txt",
    "cloudstack/userdata/user_data.txt",
    "cloudstack/password/vm_password.txt",
    "cloudstack/password/vm-password-md5checksum.txt",
    "openstack/latest/meta_data.json",
    "openstack/latest/vendor_data.json",
    "cloudstack/metadata/availability_zone.txt",
];

/// Files a NoCloud input is split into, as for [`CLOUDSTACK_FILES`].
pub const NOCLOUD_FILES: &[&str] = &["meta-data", "network-config", "user-data", "vendor-data"];

fn split_into(data: &[u8], names: &[&str]) -> DriveFiles {
    let mut d = DriveFiles::new(DEVICE, "fuzz");
    for (chunk, name) in data.split(|b| *b == 0).zip(names) {
        if !chunk.is_empty() {
            d.files.insert(name.to_string(), chunk.to_vec().into());
        }
    }
    d
}

/// Checks the invariants of one parse; panics (a fuzz finding) when one is broken.
pub fn check(result: &Result<(Instance, Report), SourceError>) {
    match result {
        Ok((instance, report)) => {
            assert!(!instance.instance_id.is_empty(), "empty instance id");
            for w in &report.warnings {
                assert!(!w.file.is_empty(), "warning without a file: {w}");
            }
            let json = serde_json::to_string(instance);
            assert!(json.is_ok(), "model does not serialise: {json:?}");
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(
                msg.contains(DEVICE),
                "error does not name the device: {msg}"
            );
        }
    }
}

/// `openstack/latest/meta_data.json` = the input.
pub fn openstack_meta_data(data: &[u8]) -> Result<(Instance, Report), SourceError> {
    let mut d = DriveFiles::new(DEVICE, "fuzz");
    d.files.insert(
        "openstack/latest/meta_data.json".into(),
        data.to_vec().into(),
    );
    d.files.insert(
        "openstack/content/0000".into(),
        b"auto lo\n".to_vec().into(),
    );
    let r = parse_drive(&d);
    check(&r);
    r
}

/// A CloudStack drive from NUL-separated chunks (see [`CLOUDSTACK_FILES`]).
pub fn cloudstack(data: &[u8]) -> Result<(Instance, Report), SourceError> {
    let mut d = split_into(data, CLOUDSTACK_FILES);
    // Detection needs the cloudstack/ tree even when the input dropped every file of it.
    d.files
        .entry("cloudstack/metadata/cloud-name.txt".into())
        .or_insert_with(|| b"fuzz".to_vec().into());
    let r = parse_drive(&d);
    check(&r);
    r
}

/// `ovf-env.xml` = the input.
pub fn ovf_env(data: &[u8]) -> Result<(Instance, Report), SourceError> {
    let mut d = DriveFiles::new(DEVICE, "fuzz");
    d.files.insert("ovf-env.xml".into(), data.to_vec().into());
    let r = parse_drive(&d);
    check(&r);
    r
}

/// A NoCloud seed from NUL-separated chunks (see [`NOCLOUD_FILES`]); the first chunk is always
/// `meta-data`, even when empty, so the drive is a seed.
pub fn nocloud(data: &[u8]) -> Result<(Instance, Report), SourceError> {
    let mut d = split_into(data, NOCLOUD_FILES);
    d.files.entry("meta-data".into()).or_default();
    let r = parse_drive(&d);
    check(&r);
    r
}

/// Separates user data from each vendor-data file in a `userdata` input.
pub const VENDOR_SEPARATOR: &[u8] = b"\0VENDOR\0";

/// Names of the vendor files of a `userdata` input, in order (the last one repeats).
pub const USERDATA_VENDOR_FILES: &[&str] = &[
    "vendor-data",
    "openstack/latest/vendor_data.json",
    "openstack/latest/vendor_data2.json",
];

/// Splits at every occurrence of `sep`.
fn split_at_separator<'a>(data: &'a [u8], sep: &[u8]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i + sep.len() <= data.len() {
        if &data[i..i + sep.len()] == sep {
            out.push(&data[start..i]);
            i += sep.len();
            start = i;
        } else {
            i += 1;
        }
    }
    out.push(&data[start..]);
    out
}

/// User data, then vendor files after each [`VENDOR_SEPARATOR`]: parsed twice with the default
/// limits, and checked: no panic, the same result both times, every warning names one of the
/// input files, script and boothook names are safe and unique, vendor scripts come first, no
/// `RANDOM` password survives, contents stay within the limits, the result serialises.
pub fn userdata(data: &[u8]) -> (UserData, Report) {
    let chunks = split_at_separator(data, VENDOR_SEPARATOR);
    let user = chunks.first().copied().unwrap_or_default();
    let vendor: Vec<(String, Vec<u8>)> = chunks
        .iter()
        .skip(1)
        .enumerate()
        .map(|(i, c)| {
            let name = USERDATA_VENDOR_FILES[i.min(USERDATA_VENDOR_FILES.len() - 1)];
            (name.to_string(), c.to_vec())
        })
        .collect();
    let limits = UserDataLimits::default();
    let (ud, report) = parse_user_data(Some(user), &vendor, &limits);
    check_userdata(&ud, &report, &limits);
    let again = parse_user_data(Some(user), &vendor, &limits);
    assert!(again == (ud.clone(), report.clone()), "not deterministic");
    (ud, report)
}

/// The invariants of one user-data parse; panics (a fuzz finding) when one is broken.
pub fn check_userdata(ud: &UserData, report: &Report, limits: &UserDataLimits) {
    for w in &report.warnings {
        assert!(
            w.file == USER_DATA_FILE || USERDATA_VENDOR_FILES.contains(&w.file.as_str()),
            "warning names no input file: {w}"
        );
    }
    let mut names = std::collections::BTreeSet::new();
    let max_content = limits.max_blob_bytes.max(limits.max_decompressed_bytes);
    for s in ud.scripts.iter().chain(&ud.boothooks) {
        assert!(
            !s.name.is_empty()
                && s.name.len() <= 64
                && !s.name.starts_with('.')
                && s.name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')),
            "unsafe script name {:?}",
            s.name
        );
        assert!(names.insert(s.name.clone()), "duplicate name {:?}", s.name);
        assert!(s.content.len() <= max_content, "script over the limits");
    }
    let first_user = ud
        .scripts
        .iter()
        .position(|s| s.origin == Origin::UserData)
        .unwrap_or(ud.scripts.len());
    assert!(
        ud.scripts[first_user..]
            .iter()
            .all(|s| s.origin == Origin::UserData),
        "a vendor script after a user script"
    );
    let cc = &ud.cloud_config;
    assert!(
        cc.chpasswd
            .users
            .iter()
            .all(|(u, p)| !u.is_empty() && *p != PasswordValue::Random),
        "RANDOM or nameless chpasswd entry kept"
    );
    for f in &cc.write_files {
        assert!(!f.path.is_empty(), "write_files entry without a path");
        assert!(
            f.content.len() <= limits.max_file_bytes,
            "file over the limit"
        );
        assert!(
            f.permissions.is_none_or(|m| m <= 0o7777),
            "mode out of range"
        );
    }
    let json = serde_json::to_string(ud);
    assert!(json.is_ok(), "user data does not serialise: {json:?}");
    let _ = format!("{ud:?}");
}

/// The password the planning harness puts on its instance; it must never appear in a plan.
pub const PLAN_SECRET: &str = "fuzz-Secret-pw-0451";

/// User data (same input layout as [`userdata`]) planned against a Debian-like target with a
/// default user and a drive password: planning must not panic, must be deterministic, must keep
/// every path inside the root, and must never show the password. Returns the number of steps.
pub fn plan_user_data(data: &[u8]) -> usize {
    use crate::model::{Blob, Format, Secret, VendorPart};
    use crate::plan::users::DefaultUser;
    use crate::plan::{plan, Action, FileFact, HostFacts, Meta, Policy};

    let chunks = split_at_separator(data, VENDOR_SEPARATOR);
    let mut inst = Instance::new(Format::OpenStack, "latest", "fuzz-instance");
    inst.user_data = chunks.first().map(|c| Blob::new(c.to_vec()));
    inst.vendor_user_data = chunks
        .iter()
        .skip(1)
        .map(|c| VendorPart {
            file: "vendor_data.json".into(),
            content_type: None,
            data: Blob::new(c.to_vec()),
        })
        .collect();
    inst.admin_pass = Some(Secret::new(PLAN_SECRET.as_bytes().to_vec()));
    let mut facts = HostFacts::default();
    let file = |c: &str, mode| FileFact {
        content: c.as_bytes().to_vec(),
        meta: Meta {
            mode,
            uid: 0,
            gid: 0,
        },
        measured: None,
    };
    for (p, c, m) in [
        ("etc/passwd", "root:x:0:0:root:/root:/bin/bash\n", 0o644),
        ("etc/shadow", "root:*:19800:0:99999:7:::\n", 0o640),
        ("etc/group", "root:x:0:\nadm:x:4:\nsudo:x:27:\n", 0o644),
        ("etc/gshadow", "root:*::\nadm:*::\nsudo:*::\n", 0o640),
        ("etc/sudoers", "root ALL=(ALL) ALL\n", 0o440),
    ] {
        facts.files.insert(p.to_string(), file(c, m));
    }
    facts.passwd = vec![crate::plan::PasswdEntry {
        name: "root".into(),
        uid: 0,
        gid: 0,
        home: "/root".into(),
    }];
    facts.skel = vec![(".profile".into(), file("# profile\n", 0o644))];
    facts.live = true;
    let mut policy = Policy::default();
    policy.users.default_user = Some(DefaultUser {
        name: "debian".into(),
        gecos: None,
        groups: vec!["sudo".into()],
        shell: None,
        sudo: Some("ALL=(ALL) NOPASSWD:ALL".into()),
        lock_password: true,
    });
    let drive = DriveFiles::new(DEVICE, "fuzz");
    let p = plan(&inst, &drive, &facts, &policy);
    assert_eq!(
        p,
        plan(&inst, &drive, &facts, &policy),
        "planning is not deterministic"
    );
    let shown = format!("{p:?}{}", serde_json::to_string(&p).unwrap_or_default());
    assert!(
        !shown.contains(PLAN_SECRET),
        "the password shows in the plan"
    );
    for s in &p.steps {
        let paths: Vec<&String> = match &s.action {
            Action::WriteFile { path, .. }
            | Action::AppendFile { path, .. }
            | Action::EnsureDir { path, .. }
            | Action::RemoveFile { path }
            | Action::Symlink { path, .. }
            | Action::RunScript { path, .. } => vec![path],
            Action::MakeDirs { paths } => paths.iter().collect(),
            _ => Vec::new(),
        };
        for path in paths {
            assert!(
                crate::paths::is_clean_relative(path) && !path.starts_with('/'),
                "step {} writes outside the root: {path:?}",
                s.id
            );
        }
    }
    p.steps.len()
}

/// The previous run's record as the agent reads it (`facts::read`: a file on the target, so
/// anyone root on the guest can edit it), checked: no panic; a record that parses has its steps
/// in id order, each id once, each found by `get`; written and read back it is the same record,
/// and its steps read as a `BTreeMap<String, String>` reads them.
pub fn record(data: &[u8]) -> bool {
    let Ok(r) = serde_json::from_slice::<crate::state::Record>(data) else {
        return false;
    };
    let ids: Vec<&str> = r.steps.keys().collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "steps not in order");
    for (id, input) in r.steps.iter() {
        assert_eq!(r.steps.get(id), Some(input), "{id:?} not found");
    }
    let again: crate::state::Record =
        serde_json::from_slice(&serde_json::to_vec(&r).expect("a record serialises"))
            .expect("a written record reads back");
    assert!(again == r, "not the same record read back");
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) {
        if let Some(steps) = v.get("steps") {
            let map: std::collections::BTreeMap<String, String> =
                serde_json::from_value(steps.clone()).expect("steps read as a map too");
            assert!(
                map.iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .eq(r.steps.iter()),
                "steps differ from a map's"
            );
        }
    }
    true
}
