//! The kernel command line's say on where the drive is: `primer=off`, `primer.source=PATH` and
//! cloud-init's NoCloud forms `ds=nocloud;s=SEED` and `ds=nocloud;h=HOST;i=ID`. Pure: parses
//! the text the platform read from /proc/cmdline and decides nothing about the host; it never
//! reads a file and never reaches the network (a network seed is refused with a warning).

use crate::model::grammar::{line_safe, Esc};

/// Longest command line parsed: the kernel's own limit is 2 KiB to 64 KiB by architecture
/// (COMMAND_LINE_SIZE); anything beyond 64 KiB is not a kernel command line.
pub const CMDLINE_MAX: usize = 64 * 1024;
/// Longest path accepted from the command line (PATH_MAX).
pub const PATH_MAX: usize = 4096;
/// Longest NoCloud host name or instance id taken from the command line.
pub const VALUE_MAX: usize = 1024;

/// What the command line asks of primer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelArgs {
    /// `primer=off`: `run` does nothing this boot.
    pub off: bool,
    /// `primer.source=PATH`: the drive, as `--source PATH` names it.
    pub source: Option<String>,
    /// `ds=nocloud` (or `nocloud-net`) was given.
    pub nocloud: bool,
    /// `ds=nocloud;s=PATH` (or `s=file://PATH`): a local seed directory or image.
    pub seed: Option<String>,
    /// `ds=nocloud;h=NAME`: the host name (`local-hostname`).
    pub hostname: Option<String>,
    /// `ds=nocloud;i=ID`: the instance id.
    pub instance_id: Option<String>,
    /// What was ignored and why, each naming the argument (printed as log-safe text).
    pub warnings: Vec<String>,
}

impl KernelArgs {
    /// Whether the command line names any drive data (a source, a seed or NoCloud values).
    pub fn names_data(&self) -> bool {
        self.source.is_some()
            || self.seed.is_some()
            || self.hostname.is_some()
            || self.instance_id.is_some()
    }
}

/// Splits a command line into words as the kernel and systemd do: separated by white space,
/// double quotes group (and are removed), no other escapes.
///
/// Scanned by bytes (both separators are ASCII, so a word's ends are character boundaries);
/// a word without quotes is borrowed, not copied character by character: every run parses
/// the whole line (issue 15).
fn words(s: &str) -> impl Iterator<Item = std::borrow::Cow<'_, str>> {
    let b = s.as_bytes();
    let mut i = 0;
    std::iter::from_fn(move || {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if i == b.len() {
            return None;
        }
        let start = i;
        let (mut quoted, mut quotes) = (false, false);
        while i < b.len() && (quoted || !b[i].is_ascii_whitespace()) {
            if b[i] == b'"' {
                quoted = !quoted;
                quotes = true;
            }
            i += 1;
        }
        let w = &s[start..i];
        Some(if quotes {
            std::borrow::Cow::Owned(w.replace('"', ""))
        } else {
            std::borrow::Cow::Borrowed(w)
        })
    })
}

/// A local path from the command line: absolute, one line, no `..` component, bounded.
fn local_path(arg: &str, v: &str) -> Result<String, String> {
    if v.len() > PATH_MAX {
        return Err(format!(
            "{arg}: a path of {} bytes (at most {PATH_MAX}); ignored",
            v.len()
        ));
    }
    if line_safe(v).is_err() {
        return Err(format!(
            "{arg}={}: a control character in the path; ignored",
            Esc(v)
        ));
    }
    if !v.starts_with('/') {
        return Err(format!("{arg}={}: not an absolute path; ignored", Esc(v)));
    }
    if v.split('/').any(|c| c == "..") {
        return Err(format!(
            "{arg}={}: a `..` component in the path; ignored",
            Esc(v)
        ));
    }
    Ok(v.to_string())
}

/// A NoCloud value (host name, instance id): one line, bounded. Its grammar is checked where
/// it lands (planning checks the host name, the state the instance id), as for a drive's.
fn short_value(arg: &str, v: &str) -> Result<String, String> {
    if v.len() > VALUE_MAX {
        return Err(format!(
            "{arg}: a value of {} bytes (at most {VALUE_MAX}); ignored",
            v.len()
        ));
    }
    if v.is_empty() || line_safe(v).is_err() {
        return Err(format!(
            "{arg}={}: empty or a control character; ignored",
            Esc(v)
        ));
    }
    Ok(v.to_string())
}

/// The seed of `s=`/`seedfrom=`: `file://PATH` or `PATH`; a network URL is refused.
fn seed(v: &str) -> Result<String, String> {
    let lower = v.get(..8).unwrap_or(v).to_ascii_lowercase();
    if ["http://", "https://", "ftp://", "ftps://", "tftp://"]
        .iter()
        .any(|p| lower.starts_with(p))
        || (v.contains("://") && !lower.starts_with("file://"))
    {
        return Err(format!(
            "ds=nocloud;s={}: a network seed; primer never reaches the network: ignored",
            Esc(v)
        ));
    }
    let path = if lower.starts_with("file://") {
        &v[7..]
    } else {
        v
    };
    local_path("ds=nocloud;s", path)
}

/// Parses `ds=nocloud;k=v;...` into `a` (cloud-init's short keys `s`, `h`, `i` and their long
/// names). Later values replace earlier ones, as a later word on the command line does.
fn nocloud(a: &mut KernelArgs, v: &str) {
    let mut parts = v.split(';');
    let name = parts.next().unwrap_or("");
    if !matches!(name, "nocloud" | "nocloud-net") {
        // Another datasource (ec2, openstack...): not primer's to read.
        return;
    }
    a.nocloud = true;
    for kv in parts.filter(|p| !p.is_empty()) {
        let (k, val) = kv.split_once('=').unwrap_or((kv, ""));
        let r = match k {
            "s" | "seedfrom" => seed(val).map(|p| a.seed = Some(p)),
            "h" | "local-hostname" => {
                short_value("ds=nocloud;h", val).map(|x| a.hostname = Some(x))
            }
            "i" | "instance-id" => {
                short_value("ds=nocloud;i", val).map(|x| a.instance_id = Some(x))
            }
            _ => Err(format!(
                "ds=nocloud: key {} is not read by primer (s, h, i are); ignored",
                Esc(k)
            )),
        };
        if let Err(w) = r {
            a.warnings.push(w);
        }
    }
}

/// Parses a kernel command line. Linear in its length; a text over [`CMDLINE_MAX`] is cut
/// there (with a warning). Repeated keys: the last one wins, as with the kernel and systemd.
pub fn parse_cmdline(text: &str) -> KernelArgs {
    let mut a = KernelArgs::default();
    let text = if text.len() > CMDLINE_MAX {
        a.warnings.push(format!(
            "kernel command line of {} bytes: only the first {CMDLINE_MAX} are read",
            text.len()
        ));
        let mut end = CMDLINE_MAX;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        // The word cut in two is dropped whole: half a path is not the path.
        let cut = &text[..end];
        cut.rfind(|c: char| c.is_ascii_whitespace())
            .map_or(cut, |at| &cut[..at])
    } else {
        text
    };
    // A NUL ends the command line as the kernel stores it.
    let text = text.split('\0').next().unwrap_or("");
    // The last word of each key decides (as with the kernel and systemd); only it is checked,
    // so a line of many repeated keys gives one warning, not one per word.
    let (mut ds, mut source) = (None, None);
    for w in words(text) {
        // After a bare `--` come init's arguments, not the kernel's (the kernel stops there).
        if w == "--" {
            break;
        }
        let Some((k, v)) = w.split_once('=') else {
            continue;
        };
        match k {
            // As systemd's `ConditionKernelCommandLine=!primer=off` sees it: the word
            // `primer=off` anywhere (before `--`) turns primer off; no later word undoes it,
            // and no other value means off, so the units and `run` always agree.
            "primer" if v == "off" => a.off = true,
            "primer.source" => source = Some(v.to_string()),
            "ds" => ds = Some(v.to_string()),
            _ => {}
        }
    }
    if let Some(v) = source {
        match local_path("primer.source", &v) {
            Ok(p) => a.source = Some(p),
            Err(e) => a.warnings.push(e),
        }
    }
    if let Some(v) = ds {
        nocloud(&mut a, &v);
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_forms() {
        let a = parse_cmdline("BOOT_IMAGE=/vmlinuz root=LABEL=root primer.source=/dev/vdb quiet\n");
        assert_eq!(a.source.as_deref(), Some("/dev/vdb"));
        assert!(!a.off && !a.nocloud && a.warnings.is_empty());
        assert!(parse_cmdline("quiet primer=off").off);
        assert!(
            parse_cmdline("primer=off primer=on").off,
            "the last one wins"
        );
        assert!(!parse_cmdline("primer").off);
        assert!(!parse_cmdline("xprimer=off").off);
        // Words after `--` are init's.
        let a = parse_cmdline("quiet primer.source=/dev/vdb -- primer=off primer.source=/x");
        assert_eq!(a.source.as_deref(), Some("/dev/vdb"));
        assert!(!a.off);
    }

    #[test]
    fn nocloud_forms() {
        let a = parse_cmdline("ds=nocloud;s=file:///var/lib/seed/;h=web-1;i=iid-7");
        assert!(a.nocloud);
        assert_eq!(a.seed.as_deref(), Some("/var/lib/seed/"));
        assert_eq!(a.hostname.as_deref(), Some("web-1"));
        assert_eq!(a.instance_id.as_deref(), Some("iid-7"));
        let a = parse_cmdline("ds=nocloud-net;seedfrom=/seed;local-hostname=h;instance-id=x");
        assert_eq!(
            (
                a.seed.as_deref(),
                a.hostname.as_deref(),
                a.instance_id.as_deref()
            ),
            (Some("/seed"), Some("h"), Some("x"))
        );
        // Another datasource is not read; the last ds= decides.
        assert!(!parse_cmdline("ds=ec2;s=/x").nocloud);
        assert!(!parse_cmdline("ds=nocloud;s=/x ds=ec2").nocloud);
        assert_eq!(
            parse_cmdline("ds=ec2 ds=nocloud;s=/y").seed.as_deref(),
            Some("/y")
        );
    }

    #[test]
    fn network_seeds_are_refused_by_name() {
        for url in [
            "http://10.0.0.1/seed/",
            "HTTPS://x/",
            "ftp://x/",
            "tftp://x/",
            "nfs://x/",
        ] {
            let a = parse_cmdline(&format!("ds=nocloud;s={url};h=web"));
            assert_eq!(a.seed, None, "{url}");
            assert_eq!(a.hostname.as_deref(), Some("web"));
            assert_eq!(a.warnings.len(), 1, "{url}");
            assert!(a.warnings[0].contains(url), "{:?}", a.warnings);
            assert!(a.warnings[0].contains("network"), "{:?}", a.warnings);
        }
    }

    /// The byte scan splits as the character-by-character reference does (quotes anywhere,
    /// empty quoted words, unterminated quotes, non-ASCII text and white space).
    #[test]
    fn words_split_as_the_reference_does() {
        fn reference(s: &str) -> Vec<String> {
            let (mut out, mut cur, mut quoted, mut any) = (Vec::new(), String::new(), false, false);
            for c in s.chars() {
                match c {
                    '"' => {
                        quoted = !quoted;
                        any = true;
                    }
                    c if c.is_ascii_whitespace() && !quoted => {
                        if any {
                            out.push(std::mem::take(&mut cur));
                            any = false;
                        }
                    }
                    c => {
                        cur.push(c);
                        any = true;
                    }
                }
            }
            if any {
                out.push(cur);
            }
            out
        }
        for line in [
            "",
            "   ",
            "a b\tc\n d",
            r#"a "b c" d"#,
            r#""" x "" "#,
            r#"a"b c"d e"#,
            r#"x "unterminated y z"#,
            "ü\u{a0}é \u{2003}ß  \"ö ä\"",
            "\u{c}a\u{b}b\rc",
        ] {
            let got: Vec<String> = words(line).map(|w| w.into_owned()).collect();
            assert_eq!(got, reference(line), "{line:?}");
        }
    }

    #[test]
    fn quotes_group_words() {
        let a = parse_cmdline(r#"a "primer.source=/dev/disk/by-label/my drive" b"#);
        assert_eq!(a.source.as_deref(), Some("/dev/disk/by-label/my drive"));
        let a = parse_cmdline(r#"primer.source="/a b" "ds=nocloud;h=x"y"#);
        assert_eq!(a.source.as_deref(), Some("/a b"));
        assert_eq!(a.hostname.as_deref(), Some("xy"));
        // An unterminated quote runs to the end, as the kernel's parser does.
        let a = parse_cmdline(r#"primer.source="/dev/vdb primer=off"#);
        assert_eq!(a.source.as_deref(), Some("/dev/vdb primer=off"));
        assert!(!a.off);
    }

    #[test]
    fn hostile_values() {
        // `..`, relative, control characters: refused with a warning naming the argument.
        for (line, what) in [
            ("primer.source=/dev/../etc/shadow", "`..`"),
            ("primer.source=dev/vdb", "absolute"),
            ("primer.source=LABEL=config-2", "absolute"),
            ("ds=nocloud;s=/seed/../../etc", "`..`"),
            ("ds=nocloud;s=file://../x", "absolute"),
            ("primer.source=/dev/vdb\u{1b}[2J", "control"),
            ("ds=nocloud;h=a\u{7f}b", "control"),
            ("ds=nocloud;i=", "empty"),
            ("ds=nocloud;x=1", "not read"),
        ] {
            let a = parse_cmdline(line);
            assert!(!a.names_data(), "{line}: {a:?}");
            assert_eq!(a.warnings.len(), 1, "{line}: {a:?}");
            assert!(a.warnings[0].contains(what), "{line}: {:?}", a.warnings);
            assert!(line_safe(&a.warnings[0]).is_ok(), "{:?}", a.warnings);
        }
        // A refused later value clears the earlier one: the last word decides.
        let a = parse_cmdline("primer.source=/dev/vdb primer.source=../x");
        assert_eq!(a.source, None);
        // A newline separates words; a NUL ends the text.
        let a = parse_cmdline("primer.source=/dev/vdb\nprimer=off\0primer=on");
        assert_eq!(a.source.as_deref(), Some("/dev/vdb"));
        assert!(a.off);
    }

    #[test]
    fn long_values_are_bounded_and_linear() {
        let long = "a".repeat(5000);
        let a = parse_cmdline(&format!("primer.source=/{long}"));
        assert_eq!(a.source, None);
        assert!(a.warnings[0].contains("5001 bytes"), "{:?}", a.warnings);
        let a = parse_cmdline(&format!("ds=nocloud;h={long};i=ok"));
        assert_eq!(a.hostname, None);
        assert_eq!(a.instance_id.as_deref(), Some("ok"));
        // A 4 KiB path is fine.
        let p = format!("/{}", "b".repeat(4000));
        assert_eq!(parse_cmdline(&format!("primer.source={p}")).source, Some(p));
        // A huge text of repeated keys: cut at the limit, the last complete word wins.
        let big = "primer.source=/dev/vdb ".repeat(100_000);
        let t = std::time::Instant::now();
        let a = parse_cmdline(&big);
        assert!(t.elapsed() < std::time::Duration::from_secs(2));
        assert_eq!(a.source.as_deref(), Some("/dev/vdb"));
        assert!(a.warnings.iter().any(|w| w.contains("only the first")));
        // Cut inside a multi-byte character: no panic.
        let a = parse_cmdline(&"é".repeat(CMDLINE_MAX));
        assert!(!a.names_data());
    }
}
