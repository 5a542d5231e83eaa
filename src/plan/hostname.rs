//! Hostname rules: sanitise a name from the drive into a valid RFC 1123 host name, and render
//! the managed `/etc/hosts` line. Pure functions; never returns a name that was not validated.

/// The result of sanitising: the FQDN (labels joined by dots) and what was changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hostname {
    pub fqdn: String,
    pub notes: Vec<String>,
}

impl Hostname {
    /// The first label: what goes into `/etc/hostname` and `sethostname(2)`.
    pub fn short(&self) -> &str {
        self.fqdn.split('.').next().unwrap_or(&self.fqdn)
    }
}

const MAX_LABEL: usize = 63;
const MAX_TOTAL: usize = 253;

/// Sanitises a host name: lower case; characters other than `a-z 0-9 -` become `-`; labels lose
/// leading/trailing `-`, empty labels are dropped, labels are cut to 63 bytes, and whole labels are
/// dropped from the end until the name fits in 253 bytes. `None` when nothing usable remains.
pub fn sanitize_hostname(raw: &str) -> Option<Hostname> {
    let mut notes = Vec::new();
    let trimmed = raw.trim().trim_end_matches('.');
    let mut labels: Vec<String> = Vec::new();
    let mut replaced = false;
    for label in trimmed.split('.') {
        let mapped: String = label
            .chars()
            .map(|c| {
                let l = c.to_ascii_lowercase();
                if l.is_ascii_lowercase() || l.is_ascii_digit() || l == '-' {
                    l
                } else {
                    replaced = true;
                    '-'
                }
            })
            .collect();
        let mut l = mapped.trim_matches('-').to_string();
        if l.len() > MAX_LABEL {
            notes.push(format!(
                "label {:?} cut to {MAX_LABEL} characters",
                truncate_for_note(&l)
            ));
            l.truncate(MAX_LABEL);
            l = l.trim_end_matches('-').to_string();
        }
        if !l.is_empty() {
            labels.push(l);
        }
    }
    if replaced {
        notes.push("characters outside a-z, 0-9 and - were replaced by -".into());
    }
    if trimmed.chars().any(|c| c.is_ascii_uppercase()) {
        notes.push("upper case letters were lowered".into());
    }
    while !labels.is_empty() && labels.join(".").len() > MAX_TOTAL {
        labels.pop();
        notes.push(format!(
            "name longer than {MAX_TOTAL} characters: trailing labels dropped"
        ));
    }
    if labels.is_empty() {
        return None;
    }
    Some(Hostname {
        fqdn: labels.join("."),
        notes,
    })
}

/// The first 20 characters of a (sanitised, ASCII) label for a note.
fn truncate_for_note(s: &str) -> String {
    match s.char_indices().nth(20) {
        Some((at, _)) => format!("{}...", &s[..at]),
        None => s.to_string(),
    }
}

/// Where a format keeps the instance's host name and SSH keys, for warnings: the metadata file
/// as the drive names it and the two fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetaNames {
    pub file: &'static str,
    pub hostname: &'static str,
    pub keys: &'static str,
}

/// The metadata file and fields of `instance`'s format (NoCloud: `meta-data`; OVF:
/// `ovf-env.xml`; the EC2 view: `meta-data.json`), so a warning names the file the value came
/// from rather than OpenStack's.
pub fn meta_names(instance: &crate::model::Instance) -> MetaNames {
    use crate::model::Format;
    let (file, hostname, keys) = match instance.format {
        Format::OpenStack if instance.version.starts_with("ec2") => {
            ("meta-data.json", "hostname", "public-keys")
        }
        Format::OpenStack => ("meta_data.json", "hostname", "public_keys"),
        Format::CloudStack => ("cloudstack/metadata", "local-hostname", "public-keys"),
        Format::NoCloud => ("meta-data", "local-hostname", "public-keys"),
        Format::Ovf => ("ovf-env.xml", "hostname", "public-keys"),
    };
    MetaNames {
        file,
        hostname,
        keys,
    }
}

/// The host name the instance asks for and where it came from (file, field): `#cloud-config`
/// `fqdn`, else its `hostname`, else the drive's metadata. The same choice on Linux (the host
/// name) and Windows (the computer name).
pub fn requested<'a>(
    instance: &'a crate::model::Instance,
    ud: &'a crate::model::userdata::UserData,
) -> Option<(&'a str, &'static str, &'static str)> {
    let cc = &ud.cloud_config;
    match (cc.fqdn.as_deref(), cc.hostname.as_deref()) {
        (Some(f), _) => Some((f, "user-data", "fqdn")),
        (None, Some(h)) => Some((h, "user-data", "hostname")),
        (None, None) => {
            let md = meta_names(instance);
            instance
                .hostname
                .as_deref()
                .map(|h| (h, md.file, md.hostname))
        }
    }
}

/// Marker that identifies the line primer owns in `/etc/hosts`.
pub const HOSTS_MARKER: &str = "# managed by primer";

/// Returns `existing` `/etc/hosts` with primer's line for `name`: the marked line is replaced;
/// without one, a Debian-style `127.0.1.1` line is taken over; otherwise the line is appended.
/// Every other line is kept byte for byte.
pub fn render_hosts(existing: &str, name: &Hostname) -> String {
    // `Hostname` only comes from `sanitize_hostname`, whose output is a DNS name; the planner
    // checks it again with `grammar::dns_name` before calling this (see `plan_hostname`).
    let names = if name.fqdn == name.short() {
        name.fqdn.clone()
    } else {
        format!("{} {}", name.fqdn, name.short())
    };
    let line = format!("127.0.1.1\t{names}\t{HOSTS_MARKER}");
    let mut lines: Vec<String> = existing.lines().map(str::to_string).collect();
    if let Some(i) = lines.iter().position(|l| l.contains(HOSTS_MARKER)) {
        lines[i] = line;
        // Only one managed line: drop any duplicate a previous tool left.
        let mut seen = false;
        lines.retain(|l| {
            if l.contains(HOSTS_MARKER) {
                let keep = !seen;
                seen = true;
                keep
            } else {
                true
            }
        });
    } else if let Some(i) = lines
        .iter()
        .position(|l| l.split_whitespace().next() == Some("127.0.1.1"))
    {
        lines[i] = line;
    } else {
        lines.push(line);
    }
    let mut out = lines.join("\n");
    out.push('\n');
    out
}

/// The whole `/etc/hosts` for `manage_etc_hosts: true` (cloud-init's Debian template, with
/// primer's marked `127.0.1.1` line): replaces the file on every run.
pub fn render_hosts_template(name: &Hostname) -> String {
    let names = if name.fqdn == name.short() {
        name.fqdn.clone()
    } else {
        format!("{} {}", name.fqdn, name.short())
    };
    format!(
        "# Written by primer (#cloud-config manage_etc_hosts: true): replaced on every run.\n\
         # Drop manage_etc_hosts from user data to keep local changes.\n\
         127.0.1.1\t{names}\t{HOSTS_MARKER}\n\
         127.0.0.1\tlocalhost\n\
         \n\
         # The following lines are desirable for IPv6 capable hosts\n\
         ::1\tlocalhost ip6-localhost ip6-loopback\n\
         ff02::1\tip6-allnodes\n\
         ff02::2\tip6-allrouters\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(raw: &str) -> Option<String> {
        sanitize_hostname(raw).map(|h| h.fqdn)
    }

    #[test]
    fn sanitize_table() {
        let cases: &[(&str, Option<&str>)] = &[
            ("test", Some("test")),
            ("test.novalocal", Some("test.novalocal")),
            ("My_Host Name", Some("my-host-name")),
            ("-bad-.ok.", Some("bad.ok")),
            ("...", None),
            ("", None),
            ("host\nname", Some("host-name")),
            ("ünicode", Some("nicode")),
        ];
        for (raw, want) in cases {
            assert_eq!(s(raw).as_deref(), *want, "{raw:?}");
        }
    }

    #[test]
    fn long_names() {
        let long = "a".repeat(100);
        let h = sanitize_hostname(&long).unwrap();
        assert_eq!(h.fqdn.len(), 63);
        assert!(!h.notes.is_empty());
        let many = vec!["b".repeat(60); 10].join(".");
        let h = sanitize_hostname(&many).unwrap();
        assert!(h.fqdn.len() <= 253);
        assert!(h.fqdn.split('.').all(|l| l.len() <= 63));
    }

    #[test]
    fn hosts_rendering() {
        let h = sanitize_hostname("web.example.com").unwrap();
        let base = "127.0.0.1\tlocalhost\n127.0.1.1\told\n::1 localhost\n";
        let out = render_hosts(base, &h);
        assert_eq!(
            out,
            "127.0.0.1\tlocalhost\n127.0.1.1\tweb.example.com web\t# managed by primer\n::1 localhost\n"
        );
        assert_eq!(render_hosts(&out, &h), out);
        let out2 = render_hosts("127.0.0.1 localhost", &h);
        assert!(out2.ends_with("web\t# managed by primer\n"));
        assert!(out2.starts_with("127.0.0.1 localhost\n"));
        let t = render_hosts_template(&h);
        assert!(t.contains(
            "\n127.0.1.1\tweb.example.com web\t# managed by primer\n127.0.0.1\tlocalhost\n"
        ));
        // Switching back to the default keeps (and updates) the marked line.
        assert_eq!(render_hosts(&t, &h), t);
    }
}
