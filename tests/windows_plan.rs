//! The Windows plan, computed on Linux: a real drive (the sample config-2 tree, and an ISO made
//! by genisoimage from a tree with a `#ps1_sysnative` user-data, an admin user and password)
//! read by primer's readers, parsed, and planned with Windows host facts (`TargetOs::Windows`).
//! The plan's JSON is golden (`tests/golden/windows/*.json`; `PRIMER_UPDATE_GOLDEN=1`
//! regenerates), and the properties that matter are asserted directly: no Linux file, the
//! administrators' key file private, no secret in the plan, a second run changes nothing.

mod common;

use std::fs;
use std::path::Path;

use common::{check_golden, make_iso, sample_meta, write_drive_tree, IsoTool};
use primer::facts::{HostFacts, TargetOs};
use primer::media::{read_fs, DriveFiles, Limits};
use primer::model::Instance;
use primer::plan::{plan, Action, Change, Plan, Policy};

const ED: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINtqymTVklmxp6/+U+CviC0Xm/x873RZzSWKP1r+ez8O demo@primer";

fn golden_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/windows")
}

fn update() -> bool {
    std::env::var("PRIMER_UPDATE_GOLDEN").is_ok_and(|v| v == "1")
}

fn windows_facts(live: bool) -> HostFacts {
    HostFacts {
        os: TargetOs::Windows,
        live,
        kernel_hostname: Some("WIN-IMAGE01".into()),
        ..Default::default()
    }
}

fn parse(drive: &DriveFiles) -> Instance {
    primer::source::parse_drive(drive).expect("drive parses").0
}

/// The plan as JSON with the one run-dependent value (the state key's random salt only
/// changes digests, which the JSON does not print) left as is.
fn plan_json(p: &Plan) -> String {
    let mut s = serde_json::to_string_pretty(p).unwrap();
    s.push('\n');
    s
}

fn check(name: &str, p: &Plan) {
    let text = plan_json(p);
    if let Some(msg) = check_golden(&golden_dir().join(name), name, &text, update()) {
        panic!("{msg}\n(PRIMER_UPDATE_GOLDEN=1 regenerates; review the diff)");
    }
}

fn step<'a>(p: &'a Plan, id: &str) -> &'a primer::plan::Step {
    p.steps
        .iter()
        .find(|s| s.id == id)
        .unwrap_or_else(|| panic!("no step {id}"))
}

/// Every path a Windows plan writes is under ProgramData (or primer's state base, the build's
/// constant) or is the drive's injected file; never /etc, never the account files.
fn assert_windows_paths(p: &Plan, injected: &[&str]) {
    for s in &p.steps {
        assert!(!matches!(
            s.action,
            Action::EditAccounts { .. } | Action::SetHostname { .. } | Action::HostKeys { .. }
        ));
        if let Some(path) = primer::apply::action_path(&s.action) {
            assert!(
                path.starts_with("ProgramData/")
                    || path.starts_with(primer::state::STATE_DIR)
                    || injected.contains(&path),
                "step {} writes /{path}",
                s.id
            );
        }
    }
}

#[test]
fn sample_drive_windows_plan_offline_root() {
    let tree = Path::new(env!("CARGO_MANIFEST_DIR")).join("images/sample/tree");
    let drive = primer::media::dir::read_dir_tree(&tree, &Limits::default()).unwrap();
    let inst = parse(&drive);
    let p = plan(&inst, &drive, &windows_facts(false), &Policy::default());
    assert_windows_paths(&p, &["etc/motd.d/primer"]);
    // Not the running system: computer name, account and network run are skipped, named.
    for id in ["computer-name", "windows-user", "network-script"] {
        let s = step(&p, id);
        assert_eq!(s.change, Change::Skip, "{id}: {}", s.why());
    }
    assert!(matches!(
        &step(&p, "computer-name").action,
        Action::SetComputerName { dns_host, netbios, .. } if dns_host == "demo-1" && netbios == "DEMO-1"
    ));
    match &step(&p, "ssh-keys").action {
        Action::WriteFile { path, mode, .. } => {
            assert_eq!(path, "ProgramData/ssh/administrators_authorized_keys");
            assert_eq!(*mode, 0o600);
        }
        a => panic!("{a:?}"),
    }
    assert_eq!(
        step(&p, "net:ProgramData/primer/network.ps1").change,
        Change::Create
    );
    check("sample-offline.json", &p);
}

#[test]
fn iso_drive_windows_plan_live_then_unchanged() {
    let t = tempfile::tempdir().unwrap();
    let tree = t.path().join("tree");
    let mut meta = sample_meta("Web_Server-With-A-Long-Name.example.com", &[ED]);
    meta["admin_pass"] = "Sup3r-Secret!".into();
    meta["meta"] = serde_json::json!({"admin_username": "cloudadmin"});
    write_drive_tree(&tree, &meta);
    for v in ["latest", "2018-08-27"] {
        fs::write(
            tree.join("openstack").join(v).join("user_data"),
            "#ps1_sysnative\r\nNew-Item -ItemType File C:\\primer-ran.txt\r\nexit 0\r\n",
        )
        .unwrap();
    }
    let iso = t.path().join("config-2.iso");
    make_iso(&tree, &iso, IsoTool::Nova);
    let drive = read_fs(
        fs::File::open(&iso).unwrap(),
        "config-2.iso",
        &Limits::default(),
    )
    .unwrap();
    let inst = parse(&drive);
    let f = windows_facts(true);
    let p = plan(&inst, &drive, &f, &Policy::default());
    assert_windows_paths(&p, &["etc/injected"]);
    let cn = step(&p, "computer-name");
    assert_eq!(cn.change, Change::Update);
    assert!(matches!(
        &cn.action,
        Action::SetComputerName { dns_host, netbios, reboot: false }
            if dns_host == "web-server-with" && netbios == "WEB-SERVER-WITH"
    ));
    assert!(cn.why().contains("reboot required"), "{}", cn.why());
    assert!(p
        .warnings
        .warnings
        .iter()
        .any(|w| w.message.contains("cut to 15")));
    assert!(matches!(
        &step(&p, "windows-user").action,
        Action::EnsureWindowsUser { name, password: Some(_), admin: true } if name == "cloudadmin"
    ));
    let script = step(&p, "script:20-user-part-001.ps1");
    assert_eq!(script.change, Change::Update);
    let text = plan_json(&p);
    assert!(!text.contains("Sup3r-Secret"), "password in the plan");
    check("iso-live.json", &p);

    let p2 = plan(&inst, &drive, &after(&p, f), &Policy::default());
    let acting: Vec<_> = p2
        .steps
        .iter()
        .filter(|s| s.change.acts())
        .map(|s| format!("{}: {}", s.id, s.why()))
        .collect();
    assert!(acting.is_empty(), "second run acts: {acting:#?}");
}

/// Facts after `p` applied; the state key is stored by then too.
fn after(p: &Plan, f: HostFacts) -> HostFacts {
    let mut f = primer::plan::facts_after(p, f);
    f.state_key.stored = true;
    f
}
