//! Where each key and list element of a YAML document starts (line and column), for `check`'s
//! messages: one linear pass over the parser's events, bounded in depth and entries. Reads no
//! value into the result (secrets stay out) and decides nothing about validity beyond syntax.

use std::collections::BTreeMap;

use serde_saphyr::granit_parser::{Event, Parser};

/// A position in the text: 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pos {
    pub line: u64,
    pub column: u64,
}

impl Pos {
    pub const START: Pos = Pos { line: 1, column: 1 };
}

/// The positions of one document's nodes by path (`users[0].name`, the form primer's warnings
/// use), and the syntax error that ended the walk, if any.
#[derive(Debug, Default)]
pub struct Positions {
    pub at: BTreeMap<String, Pos>,
    pub error: Option<(Pos, String)>,
}

/// Most paths kept: a document with millions of keys still gets a bounded map (the keys past it
/// are reported without a position).
const MAX_ENTRIES: usize = 500_000;
/// Longest path kept (a 4 MiB key is not copied into every child's path).
const MAX_PATH: usize = 1024;
/// Total bytes of the paths kept: long paths times many entries would otherwise cost ~500× the
/// input (a 1 KB key over a list of 500,000 elements).
const MAX_PATH_BYTES: usize = 32 << 20;

enum State {
    /// Expecting a key.
    Key,
    /// Expecting the value of this key.
    Value(String),
    /// Inside a collection used as a key; its value follows.
    ComplexKey,
}

enum Frame {
    Map { path: String, state: State },
    Seq { path: String, index: usize },
}

fn join(base: &str, key: &str) -> String {
    let mut s = if base.is_empty() {
        key.to_string()
    } else {
        format!("{base}.{key}")
    };
    if s.len() > MAX_PATH {
        let mut cut = MAX_PATH;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

/// Walks the first document of `text`. `max_depth` bounds the nesting followed (deeper content
/// is an error at its position, as primer's own reader refuses it).
pub fn walk(text: &str, max_depth: usize) -> Positions {
    let mut out = Positions::default();
    // Bytes of the paths stored in `out.at`.
    let mut stored = 0usize;
    let room =
        |out: &Positions, stored: usize| out.at.len() < MAX_ENTRIES && stored < MAX_PATH_BYTES;
    let mut stack: Vec<Frame> = Vec::new();
    let mut started = false;
    for ev in Parser::new_from_str(text) {
        let (ev, span) = match ev {
            Ok(e) => e,
            Err(e) => {
                let m = e.marker();
                out.error = Some((
                    Pos {
                        line: m.line() as u64,
                        column: m.col() as u64 + 1,
                    },
                    e.info().to_string(),
                ));
                return out;
            }
        };
        let pos = Pos {
            line: span.start.line() as u64,
            column: span.start.col() as u64 + 1,
        };
        let (is_node, opens) = match &ev {
            Event::DocumentStart(..) => {
                if started {
                    // primer reads one document; the reader reports a second one.
                    return out;
                }
                started = true;
                (false, false)
            }
            Event::Scalar(..) | Event::Alias(..) => (true, false),
            Event::SequenceStart(..) | Event::MappingStart(..) => (true, true),
            Event::SequenceEnd | Event::MappingEnd => {
                stack.pop();
                if let Some(Frame::Map { state, .. }) = stack.last_mut() {
                    if matches!(state, State::ComplexKey) {
                        *state = State::Value("?".into());
                    }
                }
                (false, false)
            }
            _ => (false, false),
        };
        if !is_node {
            continue;
        }
        // The path of this node, and whether it is a mapping key.
        let mut path = None;
        match stack.last_mut() {
            None => path = Some(String::new()),
            Some(Frame::Seq { path: p, index }) => {
                path = Some(format!("{p}[{index}]"));
                *index += 1;
            }
            Some(Frame::Map { path: p, state }) => match state {
                State::Key => match &ev {
                    Event::Scalar(k, ..) => {
                        let child = join(p, k);
                        if room(&out, stored) {
                            // A repeated key keeps its last position: the value that is used.
                            stored += child.len();
                            out.at.insert(child.clone(), pos);
                        }
                        *state = State::Value(child);
                    }
                    _ if opens => *state = State::ComplexKey,
                    _ => *state = State::Value("?".into()),
                },
                State::Value(child) => {
                    path = Some(std::mem::take(child));
                    *state = State::Key;
                }
                State::ComplexKey => {}
            },
        }
        let complex_key = path.is_none() && opens;
        if let Some(p) = &path {
            if !p.is_empty() && room(&out, stored) && !out.at.contains_key(p) {
                stored += p.len();
                out.at.insert(p.clone(), pos);
            }
        }
        if opens {
            if stack.len() >= max_depth {
                out.error = Some((pos, format!("nesting deeper than {max_depth}")));
                return out;
            }
            let p = path.unwrap_or_else(|| "?".into());
            let p = if complex_key { "?".into() } else { p };
            stack.push(match ev {
                Event::SequenceStart(..) => Frame::Seq { path: p, index: 0 },
                _ => Frame::Map {
                    path: p,
                    state: State::Key,
                },
            });
        }
    }
    out
}

impl Positions {
    /// The position of `field` (a path as primer's warnings give it), else of its nearest
    /// parent that has one. `None`: nothing of it is known (a whole-file problem).
    pub fn find(&self, field: &str) -> Option<Pos> {
        // `chpasswd.list line 3` names a line inside a value: the value's key is the anchor.
        let mut f = field.split(" line ").next().unwrap_or(field).trim();
        loop {
            if f.is_empty() {
                return None;
            }
            if let Some(p) = self.at.get(f) {
                return Some(*p);
            }
            match f.rfind(['.', '[']) {
                Some(i) => f = &f[..i],
                None => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_elements_have_their_positions() {
        let t = "#cloud-config\nhostname: a\nusers:\n  - name: bob\n    groups: [x, y]\n  - default\nwrite_files:\n- path: /etc/x\n";
        let p = walk(t, 64);
        assert!(p.error.is_none());
        assert_eq!(p.at["hostname"], Pos { line: 2, column: 1 });
        assert_eq!(p.at["users"], Pos { line: 3, column: 1 });
        assert_eq!(p.at["users[0]"], Pos { line: 4, column: 5 });
        assert_eq!(p.at["users[0].name"], Pos { line: 4, column: 5 });
        assert_eq!(p.at["users[0].groups"], Pos { line: 5, column: 5 });
        assert_eq!(
            p.at["users[0].groups[1]"],
            Pos {
                line: 5,
                column: 17
            }
        );
        assert_eq!(p.at["users[1]"], Pos { line: 6, column: 5 });
        assert_eq!(p.at["write_files[0].path"], Pos { line: 8, column: 3 });
        assert_eq!(
            p.find("users[0].groups[7]"),
            Some(Pos { line: 5, column: 5 })
        );
        assert_eq!(p.find("chpasswd.list line 2"), None);
        assert_eq!(p.find("users[1].name"), Some(Pos { line: 6, column: 5 }));
    }

    #[test]
    fn syntax_errors_and_depth_are_located() {
        let p = walk("a: 1\nb:\n\t- x\n", 64);
        let (pos, _) = p.error.expect("tab");
        assert_eq!(pos.line, 3);
        let deep = format!("a: {}1{}\n", "[".repeat(100), "]".repeat(100));
        let p = walk(&deep, 64);
        let (pos, m) = p.error.expect("depth");
        assert_eq!(pos.line, 1);
        assert!(m.contains("64"), "{m}");
    }

    #[test]
    fn complex_keys_do_not_confuse_paths() {
        let p = walk("? [a, b]\n: 1\nc: 2\n", 64);
        assert!(p.error.is_none());
        assert_eq!(p.at["c"], Pos { line: 3, column: 1 });
    }

    #[test]
    fn long_keys_over_long_lists_stay_within_the_byte_budget() {
        // A 1000-byte key over a list of 200,000 elements: ~1 MB of text whose paths would
        // take ~200 MB if every element kept its full path.
        let key = "k".repeat(1000);
        let mut t = format!("#cloud-config\n{key}: [");
        t.push_str(&"0,".repeat(200_000));
        t.push_str("0]\n");
        let p = walk(&t, 64);
        let bytes: usize = p.at.keys().map(String::len).sum();
        assert!(bytes <= MAX_PATH_BYTES + MAX_PATH, "{bytes}");
        assert_eq!(p.at[&key], Pos { line: 2, column: 1 });
    }
}
