//! Architecture: reads the `crate::` paths of every file under `src/` and checks the layering
//! rules of the README's *Layout* section: the layers that parse, plan and render never import
//! the writer or the platform seam; media never imports probe; net never imports plan; the
//! path leaf imports nothing of primer; the faces (`cli`) are the only importers of the
//! agent; and no import cycle joins two top-level modules. A failure names the file and the
//! import. Reads source text only.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// One reference from a file to a top-level module of the crate.
#[derive(Debug, Clone)]
struct Import {
    /// Path of the file, relative to the package root.
    file: String,
    line: usize,
    /// The module referred to (`apply` for `crate::apply::fs::Writer`).
    target: String,
    /// The source line, trimmed, for the message.
    text: String,
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The top-level module a file belongs to (`src/plan/users.rs` -> `plan`, `src/state.rs` ->
/// `state`); `None` for the crate root and the binary.
fn module_of(rel: &Path) -> Option<String> {
    let first = rel.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (!matches!(name, "lib" | "main")).then(|| name.to_string())
}

/// The modules declared by `src/lib.rs` (`pub mod x;`).
fn top_modules() -> BTreeSet<String> {
    let lib = fs::read_to_string(src().join("lib.rs")).expect("src/lib.rs");
    lib.lines()
        .filter_map(|l| {
            let l = l.trim();
            let rest = l
                .strip_prefix("pub mod ")
                .or_else(|| l.strip_prefix("mod "))?;
            Some(rest.trim_end_matches(';').trim().to_string())
        })
        .collect()
}

/// The code of a file without its unit-test module (tests may reach anywhere) and with its
/// comment lines blanked (a comment naming a path is not an import); line numbers are kept.
fn without_tests(text: &str) -> String {
    // `#[cfg(test)]`, or `#[cfg(all(test, unix))]` for a module of Unix-only tests.
    let code = match text.find("\n#[cfg(test)]\nmod tests").or_else(|| {
        let i = text.find("\n#[cfg(all(test, ")?;
        text[i..]
            .find(")]\nmod tests")
            .and_then(|j| (j < 60).then_some(i))
    }) {
        Some(i) => &text[..i],
        None => text,
    };
    code.lines()
        .map(|l| {
            if l.trim_start().starts_with("//") {
                ""
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every reference to a top-level module in `text`: `crate::MODULE`, the names of a grouped
/// `use crate::{a, b::{c, d}, e}` (which may span lines and nest), and `super::`…`MODULE` when
/// the `super` chain climbs from the file (`depth` modules deep) to the crate root. A glob or a
/// renamed crate (`crate::*`, `use crate as x`) hides what it imports: reported as the target
/// `*` (which no rule allows).
fn imports_of(file: &str, depth: usize, text: &str, modules: &BTreeSet<String>) -> Vec<Import> {
    let mut out = Vec::new();
    let code = without_tests(text);
    let code = code.as_str();
    let line_of = |pos: usize| code[..pos].matches('\n').count() + 1;
    let text_of = |line: usize| code.lines().nth(line - 1).unwrap_or("").trim().to_string();
    let mut push = |pos: usize, name: &str| {
        if modules.contains(name) || name == "*" {
            let line = line_of(pos);
            out.push(Import {
                file: file.to_string(),
                line,
                target: name.to_string(),
                text: text_of(line),
            });
        }
    };
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    let mut at = 0;
    while at < code.len() {
        // The next path that starts at the crate root: `crate::` or enough `super::`s.
        let next_crate = code[at..].find("crate").map(|i| at + i);
        let next_super = code[at..].find("super::").map(|i| at + i);
        let Some(start) = [next_crate, next_super].into_iter().flatten().min() else {
            break;
        };
        let before = code[..start].chars().next_back();
        // `my_crate::x`, `self.super_x` or the inside of a longer path are not roots.
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':' || c == '.') {
            at = start + 1;
            continue;
        }
        let rest = &code[start..];
        let (after, is_root) = if let Some(r) = rest.strip_prefix("crate::") {
            (start + rest.len() - r.len(), true)
        } else if let Some(r) = rest.strip_prefix("crate as ") {
            let _ = r;
            push(start, "*");
            at = start + "crate as ".len();
            continue;
        } else if rest.starts_with("super::") {
            let mut n = 0;
            let mut r = rest;
            while let Some(x) = r.strip_prefix("super::") {
                n += 1;
                r = x;
            }
            (start + rest.len() - r.len(), n == depth)
        } else {
            at = start + 1;
            continue;
        };
        at = after;
        if !is_root {
            continue;
        }
        let tail = &code[after..];
        if tail.starts_with('*') {
            push(after, "*");
        } else if let Some(group) = tail.strip_prefix('{') {
            // Names at nesting depth 0 of the group, up to its matching brace.
            let mut nest = 0usize;
            let mut expect_name = true;
            for (k, c) in group.char_indices() {
                match c {
                    '{' => nest += 1,
                    '}' if nest == 0 => break,
                    '}' => nest -= 1,
                    ',' if nest == 0 => expect_name = true,
                    '*' if nest == 0 && expect_name => {
                        push(after + 1 + k, "*");
                        expect_name = false;
                    }
                    c if expect_name && nest == 0 && (c.is_alphanumeric() || c == '_') => {
                        push(after + 1 + k, &ident(&group[k..]));
                        expect_name = false;
                    }
                    _ => {}
                }
            }
        } else {
            push(start, &ident(tail));
        }
    }
    out
}

/// How many modules deep a file is below the crate root (`src/state.rs`, `src/plan/mod.rs`:
/// 1; `src/plan/users.rs`: 2): the number of `super::` that reach the root from it.
fn depth_of(rel: &Path) -> usize {
    let n = rel.components().count();
    if rel.file_name().is_some_and(|f| f == "mod.rs") {
        n - 1
    } else {
        n
    }
}

/// Every import of the crate, by the module of the file that makes it.
fn all_imports() -> Vec<(String, Import)> {
    let modules = top_modules();
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = Vec::new();
    for f in files {
        let rel = f.strip_prefix(src()).expect("under src");
        let Some(module) = module_of(rel) else {
            continue;
        };
        let text = fs::read_to_string(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        let shown = f.strip_prefix(root).unwrap_or(&f).display().to_string();
        for i in imports_of(&shown, depth_of(rel), &text, &modules) {
            if i.target != module {
                out.push((module.clone(), i));
            }
        }
    }
    out
}

fn describe(i: &Import) -> String {
    format!("{}:{}: {}", i.file, i.line, i.text)
}

/// The layering rules: (importing modules, forbidden targets, why).
const RULES: &[(&[&str], &[&str], &str)] = &[
    (
        &["model", "source", "net", "plan", "media", "facts", "paths"],
        &["apply"],
        "parsing, planning and reading never import the writer",
    ),
    (
        &[
            "model", "source", "net", "plan", "media", "facts", "paths", "probe", "state",
        ],
        &["platform", "agent", "cli", "status", "disk"],
        "lower layers never import the platform seam, the pipeline or the faces",
    ),
    (&["media"], &["probe"], "media only reads what it is told"),
    (
        &["net"],
        &["plan", "facts"],
        "net is pure: models and renderers",
    ),
    (
        &["facts"],
        &["plan"],
        "facts are read from a request, then handed to plan as data",
    ),
    (
        &["paths"],
        &[
            "agent", "apply", "cli", "config", "disk", "facts", "harness", "media", "model", "net",
            "plan", "platform", "probe", "source", "state", "status",
        ],
        "the path leaf imports nothing of primer",
    ),
    (
        &[
            "apply", "config", "disk", "facts", "harness", "media", "model", "net", "paths",
            "plan", "platform", "probe", "source", "state", "status",
        ],
        &["agent", "cli"],
        "only the faces call the pipeline",
    ),
    (
        &["make"],
        &[
            "agent", "apply", "cli", "config", "disk", "facts", "harness", "paths", "plan",
            "platform", "probe", "state", "status",
        ],
        "make-drive builds drives from the model, the parsers and the readers only",
    ),
    (
        &[
            "agent", "apply", "config", "disk", "facts", "harness", "media", "model", "net",
            "paths", "plan", "platform", "probe", "source", "state", "status",
        ],
        &["make"],
        "only the CLI calls make-drive",
    ),
];

#[test]
fn layers_never_point_back_up() {
    let imports = all_imports();
    let mut broken = Vec::new();
    for (from, forbidden, why) in RULES {
        for (module, i) in &imports {
            if from.contains(&module.as_str()) && forbidden.contains(&i.target.as_str()) {
                broken.push(format!(
                    "{module} imports {} ({why}): {}",
                    i.target,
                    describe(i)
                ));
            }
        }
    }
    assert!(
        broken.is_empty(),
        "layering rules broken:\n{}",
        broken.join("\n")
    );
}

#[test]
fn no_cycle_among_top_level_modules() {
    let imports = all_imports();
    // module -> target -> the first import making that edge (for the message).
    let mut graph: BTreeMap<String, BTreeMap<String, Import>> = BTreeMap::new();
    for (module, i) in imports {
        graph
            .entry(module)
            .or_default()
            .entry(i.target.clone())
            .or_insert(i);
    }
    // Depth-first search with colours; a grey target closes a cycle.
    fn visit(
        n: &str,
        graph: &BTreeMap<String, BTreeMap<String, Import>>,
        colour: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
        cycles: &mut Vec<Vec<String>>,
    ) {
        colour.insert(n.to_string(), 1);
        stack.push(n.to_string());
        for t in graph.get(n).map(|m| m.keys()).into_iter().flatten() {
            match colour.get(t.as_str()).copied().unwrap_or(0) {
                0 => visit(t, graph, colour, stack, cycles),
                1 => {
                    let from = stack.iter().position(|s| s == t).unwrap_or(0);
                    let mut c = stack[from..].to_vec();
                    c.push(t.clone());
                    cycles.push(c);
                }
                _ => {}
            }
        }
        stack.pop();
        colour.insert(n.to_string(), 2);
    }
    let mut colour = BTreeMap::new();
    let mut cycles = Vec::new();
    for n in graph.keys() {
        if colour.get(n.as_str()).copied().unwrap_or(0) == 0 {
            visit(n, &graph, &mut colour, &mut Vec::new(), &mut cycles);
        }
    }
    let shown: Vec<String> = cycles
        .iter()
        .map(|c| {
            let edges: Vec<String> = c
                .windows(2)
                .map(|w| format!("  {} -> {}: {}", w[0], w[1], describe(&graph[&w[0]][&w[1]])))
                .collect();
            format!("cycle {}:\n{}", c.join(" -> "), edges.join("\n"))
        })
        .collect();
    assert!(shown.is_empty(), "{}", shown.join("\n"));
}

/// The reader itself: grouped and nested imports (a name after a nested group too), inline
/// paths, a longer crate name, comments, the test module, `super` chains that reach the root
/// (or not), a glob and a renamed crate.
#[test]
fn the_import_reader_sees_grouped_nested_inline_and_super_paths() {
    let modules: BTreeSet<String> = ["apply", "plan", "model", "net", "state"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let text = "use crate::{\n    plan::{Plan, Step},\n    apply::fs,\n};\n\
                fn f() { crate::model::x(); my_crate::apply::y(); }\n\
                /// `crate::apply` in a comment\n\
                use super::super::net::x;\n\
                use super::state;\n\
                use crate::*;\n\
                \n#[cfg(test)]\nmod tests {\n    use crate::apply::z;\n}\n";
    let found = |depth: usize| -> Vec<(String, usize)> {
        imports_of("x.rs", depth, text, &modules)
            .into_iter()
            .map(|i| (i.target, i.line))
            .collect()
    };
    let s = |n: &str, l: usize| (n.to_string(), l);
    // Two modules deep: `super::super::net` reaches the root, `super::state` does not.
    assert_eq!(
        found(2),
        vec![
            s("plan", 2),
            s("apply", 3),
            s("model", 5),
            s("net", 7),
            s("*", 9)
        ]
    );
    // One module deep: `super::state` is the root's `state`.
    assert_eq!(
        found(1),
        vec![
            s("plan", 2),
            s("apply", 3),
            s("model", 5),
            s("state", 8),
            s("*", 9)
        ]
    );
}

/// Parsing, planning and rendering (and the faces) use no operating-system API: they are the
/// same on every platform. `std::os::*`, `nix::` and `libc::` belong to the platform seam and
/// the code that reads or writes the target (facts/read.rs, apply, disk, media's mount mode).
#[test]
fn planning_parsing_and_rendering_use_no_os_api() {
    // Paths below src/: parsing, planning, rendering, the faces, the path leaf, and the facts'
    // types (planning is compiled against them; their Unix reading is facts/read.rs).
    let neutral = [
        "model/",
        "source/",
        "net/",
        "plan/",
        "paths.rs",
        "harness.rs",
        "cli.rs",
        "cli/",
        "facts/mod.rs",
        "facts/net.rs",
    ];
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut found = Vec::new();
    for f in files {
        let rel = f.strip_prefix(src()).expect("under src");
        let rel_s = rel.to_string_lossy();
        if !neutral.iter().any(|n| rel_s.starts_with(n)) {
            continue;
        }
        let text = fs::read_to_string(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        for (n, line) in without_tests(&text).lines().enumerate() {
            if ["std::os::", "nix::", "libc::"]
                .iter()
                .any(|api| line.contains(api))
            {
                found.push(format!(
                    "{}:{}: {}",
                    f.strip_prefix(root).unwrap_or(&f).display(),
                    n + 1,
                    line.trim()
                ));
            }
        }
    }
    assert!(
        found.is_empty(),
        "operating-system API outside the platform side:\n{}",
        found.join("\n")
    );
}

/// Win32 calls belong to the Windows platform side: only `src/platform/` names `windows_sys`,
/// plus `facts/read.rs`, which reads the target's metadata back (the ACL model) and may not
/// import the platform seam (facts sit below it).
#[test]
fn only_the_platform_side_calls_win32() {
    let allowed = ["platform/", "facts/read.rs"];
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut found = Vec::new();
    for f in files {
        let rel = f.strip_prefix(src()).expect("under src");
        let rel_s = rel.to_string_lossy().replace('\\', "/");
        if allowed.iter().any(|a| rel_s.starts_with(a)) {
            continue;
        }
        let text = fs::read_to_string(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        for (n, line) in text.lines().enumerate() {
            if line.contains("windows_sys") {
                found.push(format!("src/{rel_s}:{}: {}", n + 1, line.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "Win32 API outside the platform side:\n{}",
        found.join("\n")
    );
    // The check sees what it must: the Windows platform side does name it.
    let platform = fs::read_to_string(src().join("platform/windows/mod.rs")).expect("platform");
    assert!(platform.contains("windows_sys"));
}
