//! Fuzz target: the accounts editor (`primer::plan::accounts`) on arbitrary passwd, shadow,
//! group and gshadow texts and one requested user (name, gecos, shell, home, primary group,
//! groups, uid, a password hash), NUL-separated in that order. Checks: never panics, the same
//! inputs give the same edit, every line the edit adds or changes keeps its file's field count
//! (an existing line keeps its own) and holds no control character a clean line lacked.
#![no_main]

use libfuzzer_sys::fuzz_target;
use primer::plan::accounts::{plan_accounts, AccountFiles, LoginDefs, UserSpec};

/// Fields per line of passwd, shadow, group, gshadow.
const FIELDS: [usize; 4] = [7, 9, 4, 4];

/// Lines as the editor sees them: split at `\n` only (`str::lines` would also eat the `\r` of a
/// last line that gains its newline when a line is appended after it).
fn lines(text: &str) -> impl Iterator<Item = &str> {
    text.split('\n').filter(|l| !l.is_empty())
}

fn check(file: usize, before: &str, after: &str) {
    let old: Vec<&str> = lines(before).collect();
    for line in lines(after) {
        if old.contains(&line) {
            continue;
        }
        let body = line.strip_suffix('\r').unwrap_or(line);
        let name = body.split(':').next().unwrap_or("");
        let orig = old
            .iter()
            .map(|l| l.strip_suffix('\r').unwrap_or(l))
            .find(|l| l.split(':').next() == Some(name) && l.contains(':'));
        let want = orig.map_or(FIELDS[file], |o| o.split(':').count());
        assert_eq!(
            body.split(':').count(),
            want,
            "file {file}: {line:?} (was {orig:?})"
        );
        if orig.is_none_or(|o| !o.chars().any(char::is_control)) {
            assert!(
                !body.chars().any(char::is_control),
                "file {file}: control character in {line:?}"
            );
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let parts: Vec<String> = data
        .split(|&b| b == 0)
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect();
    let part = |i: usize| parts.get(i).cloned();
    let files = AccountFiles {
        passwd: part(0).unwrap_or_default(),
        shadow: part(1),
        group: part(2).unwrap_or_default(),
        gshadow: part(3),
        // After every other part, so the minimised corpus keeps its meaning.
        subuid: part(13),
        subgid: part(14),
    };
    let opt = |i: usize| part(i).filter(|s| !s.is_empty());
    let spec = UserSpec {
        name: part(4).unwrap_or_else(|| "fuzz".into()),
        gecos: opt(5),
        shell: opt(6),
        home: opt(7),
        primary_group: opt(8),
        groups: part(9)
            .map(|g| g.split(',').map(str::to_string).collect())
            .unwrap_or_default(),
        uid: part(10).and_then(|u| u.parse().ok()),
        system: data.first().is_some_and(|b| b & 1 == 1),
        lock_password: data.first().is_some_and(|b| b & 2 == 2),
        password_hash: opt(11),
        create_home: true,
    };
    let passwords: Vec<(String, String)> = opt(12)
        .map(|h| vec![(spec.name.clone(), h)])
        .unwrap_or_default();
    let defs = LoginDefs::default();
    let a = plan_accounts(&files, &defs, &[spec.clone()], &passwords);
    let b = plan_accounts(&files, &defs, &[spec], &passwords);
    assert_eq!(a, b, "not deterministic");
    let before = [
        files.passwd.as_str(),
        files.shadow.as_deref().unwrap_or(""),
        files.group.as_str(),
        files.gshadow.as_deref().unwrap_or(""),
    ];
    for (i, after) in [&a.passwd, &a.shadow, &a.group, &a.gshadow].into_iter().enumerate() {
        if let Some(after) = after {
            check(i, before[i], after);
        }
    }
});
