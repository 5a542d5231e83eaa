//! Network planning: turns the drive's network input into steps that write the rendered files
//! of the target's backend and remove primer's own stale files of that backend. Pure (the
//! host's interfaces, backend and existing files come from `HostFacts::network`).
//!
//! Never tears down: without network input on the drive, or with an empty one (`{}`: the cloud
//! knows nothing), no network step is planned and existing files stay as they are. A run
//! without a drive never reaches the planner at all.

use std::time::Duration;

use super::{Action, Change, Planner, Step};
use crate::media::DriveFiles;
use crate::model::Instance;
use crate::net::naming::assign_names_with_drivers;
use crate::net::render::{self, eni, RenderOptions, HEADER};
use crate::net::{self, Backend, InputFormat, NetworkConfig};
use crate::plan::Meta;

/// The operator's network choices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetPolicy {
    /// Render for this backend instead of the detected one (config or `--network-backend`).
    pub backend: Option<Backend>,
    /// How long a live run waits for NICs the drive names (see `net::host`).
    pub wait: Duration,
}

impl Default for NetPolicy {
    fn default() -> Self {
        NetPolicy {
            backend: None,
            wait: crate::facts::net::DEFAULT_WAIT,
        }
    }
}

/// The network input of an instance: its bytes, the drive file it came from and the format.
/// The source parsers hand over every network document they found (`Instance::network`, in
/// their order of preference); the first typed one wins: OpenStack `network_data.json` (or its
/// legacy `network_info.json`), else network config v1/v2 (NoCloud, OVF). A drive that says
/// `config: disabled`, or holds only legacy ENI text, gets no rendered network.
pub fn network_input(
    instance: &Instance,
    drive: &DriveFiles,
) -> Option<(Vec<u8>, String, InputFormat)> {
    let (input, file) = input_of(instance, drive)?;
    let (bytes, fmt) = match input {
        Input::OpenStack(data) => (serde_json::to_vec(&*data).ok()?, InputFormat::NetworkData),
        Input::Bytes(b, fmt) => (b, fmt),
    };
    Some((bytes, file, fmt))
}

/// An instance's network input as [`network_input`] finds it, before any serialising.
enum Input<'a> {
    /// `network_data.json` as the source decoded it: parsed from that document (the text
    /// `serde_json` writes of it is only hashed and measured, never read back). A large one
    /// the instance holds as text (`JsonDoc`), parsed here and dropped with the input.
    OpenStack(std::borrow::Cow<'a, serde_json::Value>),
    /// Text of a known format: network config v1/v2 serialised from the source's document
    /// (read again by the network config reader, YAML typing and all), or the legacy
    /// `network_info.json` the source did not take.
    Bytes(Vec<u8>, InputFormat),
}

fn input_of<'a>(instance: &'a Instance, drive: &DriveFiles) -> Option<(Input<'a>, String)> {
    use crate::model::NetworkConfig as Doc;
    for doc in &instance.network {
        match doc {
            Doc::OpenStack { file, data } => {
                return Some((Input::OpenStack(data.value()), file.clone()))
            }
            Doc::V1 { file, config } | Doc::V2 { file, config } => {
                return serde_json::to_vec(config)
                    .ok()
                    .map(|b| (Input::Bytes(b, InputFormat::NetworkConfig), file.clone()))
            }
            Doc::Disabled { .. } => return None,
            Doc::Eni { .. } => {}
        }
    }
    let legacy = format!("openstack/{}/network_info.json", instance.version);
    drive
        .get(&legacy)
        .map(|b| (Input::Bytes(b.to_vec(), InputFormat::NetworkData), legacy))
}

/// Parses an input. An OpenStack document is measured (its text as the plan hashes it, not
/// held), for the size bound the parser applies to text.
fn parse_input(
    input: &Input<'_>,
    file: &str,
) -> Result<(NetworkConfig, crate::model::Report), net::NetError> {
    match input {
        Input::OpenStack(data) => {
            let mut len = 0usize;
            crate::state::compact_json(data, &mut |b| len = len.saturating_add(b.len()));
            net::network_data::parse_network_data_doc(data, len, file)
        }
        Input::Bytes(b, fmt) => net::parse_network(b, *fmt, file),
    }
}

/// Parses an instance's network input; `Ok(None)` when there is none.
pub fn instance_network(
    instance: &Instance,
    drive: &DriveFiles,
) -> Result<Option<(NetworkConfig, crate::model::Report, String)>, net::NetError> {
    let Some((input, file)) = input_of(instance, drive) else {
        return Ok(None);
    };
    let (c, r) = parse_input(&input, &file)?;
    Ok(Some((c, r, file)))
}

/// An instance's network input, read and parsed once per run: the host facts need the MACs
/// it names (`plan::wanted`) and the planner the whole configuration ([`parse_network_input`]
/// before both, instead of a parse for each).
pub struct NetworkInput {
    /// The drive file it came from (names it in warnings and errors).
    file: String,
    /// The drive's legacy `network_info.json`, which the source did not take: planned, but
    /// its NICs are not waited for (the facts only ever asked for the source's documents').
    legacy: bool,
    /// SHA-256 state over the input's text, the text the step's input hash has always covered
    /// (a decoded document as `serde_json` writes it); [`input_hash`] adds the backend's name.
    text_hash: sha2::Sha256,
    parsed: Result<(NetworkConfig, crate::model::Report), net::NetError>,
}

impl NetworkInput {
    /// MACs of the NICs the input names (best effort: unparsable data names none).
    pub fn wanted_macs(&self) -> Vec<String> {
        match &self.parsed {
            Ok((c, _)) if !self.legacy => c
                .links
                .iter()
                .filter(|l| matches!(l.kind, crate::model::network::LinkKind::Physical))
                .filter_map(|l| l.mac.clone())
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// Reads and parses an instance's network input (`None`: there is none). A decoded document
/// is written once, into the hash (never held whole as text), and parsed from the document
/// itself.
pub fn parse_network_input(instance: &Instance, drive: &DriveFiles) -> Option<NetworkInput> {
    use sha2::Digest;
    let (input, file) = input_of(instance, drive)?;
    let mut text_hash = sha2::Sha256::new();
    let len = match &input {
        // Written by primer's own writer (`serde_json`'s text, byte for byte).
        Input::OpenStack(data) => {
            let mut len = 0usize;
            crate::state::compact_json(data, &mut |b| {
                text_hash.update(b);
                len = len.saturating_add(b.len());
            });
            len
        }
        Input::Bytes(b, _) => {
            text_hash.update(b);
            b.len()
        }
    };
    // The only input read as bytes in `network_data.json` form is the legacy file.
    let legacy = matches!(input, Input::Bytes(_, InputFormat::NetworkData));
    let parsed = match &input {
        Input::OpenStack(data) => net::network_data::parse_network_data_doc(data, len, &file),
        Input::Bytes(b, fmt) => net::parse_network(b, *fmt, &file),
    };
    Some(NetworkInput {
        file,
        legacy,
        text_hash,
        parsed,
    })
}

impl Planner<'_> {
    /// Plans the network from the input the caller parsed ([`parse_network_input`], handed to
    /// the planner by `plan::plan_parsed`), else parses it here.
    pub(super) fn plan_network(
        &mut self,
        instance: &Instance,
        drive: &DriveFiles,
        policy: &NetPolicy,
    ) {
        let parsed = match self.network.take() {
            Some(given) => given,
            None => parse_network_input(instance, drive),
        };
        let Some(NetworkInput {
            file,
            text_hash,
            parsed,
            ..
        }) = parsed
        else {
            return;
        };
        let (config, report) = match parsed {
            Ok(x) => x,
            Err(e) => {
                self.steps.push(Step {
                    id: "network".into(),
                    change: Change::Error,
                    action: Action::Nothing,
                    why: format!("network configuration not applied: {e}").into(),
                    input: None,
                });
                return;
            }
        };
        self.warnings.warnings.extend(report.warnings);
        if config.is_empty() {
            // `{}`: the cloud describes no network; the image's own configuration stays.
            return;
        }
        let facts = &self.facts.network;
        let (backend, why) = match (policy.backend, &facts.detected) {
            (Some(b), _) => (b, "chosen by configuration".to_string()),
            (None, Some((b, why))) => (*b, why.clone()),
            (None, None) => {
                self.warnings.warn(
                    &file,
                    "",
                    "no network backend found on the target (networkd, NetworkManager, ifupdown, netplan); network not configured (choose one with --network-backend)",
                );
                return;
            }
        };
        let names = assign_names_with_drivers(&config, &facts.interfaces, &facts.drivers);
        // Windows' facts list no adapters: the PowerShell script finds each link by MAC when it
        // runs (and says which it did not find), so there is nothing to warn about here.
        let adapters_known = self.facts.os != crate::facts::TargetOs::Windows;
        let missing = if adapters_known {
            missing_macs(&config, &names.missing_macs)
        } else {
            Vec::new()
        };
        for (id, mac) in missing {
            self.warnings.warn(
                &file,
                &format!("links (id {id})"),
                format!("no interface with MAC {mac} on the target yet; configuration matches it by MAC"),
            );
        }
        let opts = RenderOptions {
            netplan_renderer: facts.nm_enabled.then(|| "NetworkManager".to_string()),
            eni_resolv_conf: !facts.resolvconf && !facts.resolv_conf_symlink,
        };
        let rendered = render::try_render(backend, &config, &names, &opts);
        // The model and the names are not read again: freed before the steps are made, which
        // then reuse their memory (14,000 chained VLANs: ~7 MB of links and names).
        drop(names);
        drop(config);
        let rendered = match rendered {
            Ok(r) => r,
            Err(e) => {
                // The renderers' last check refused a value: nothing of this backend is
                // written (the image's own network stays), and the run reports a failed step.
                self.steps.push(Step {
                    id: "network".into(),
                    change: Change::Error,
                    action: Action::Nothing,
                    why: format!("network configuration not applied ({backend}): {e}").into(),
                    input: None,
                });
                return;
            }
        };
        for w in &rendered.warnings {
            self.warnings
                .warn(&file, "links", format!("{backend}: {w}"));
        }
        let input = Some(input_hash(text_hash, backend));
        let what = format!("network ({backend}: {why})");
        let first = self.steps.len();
        // Room for every file's step at once: grown by doubling, 28,000 steps (14,000 VLANs)
        // held room for 32,768 through the rest of the plan, ~1 MB at a re-run's peak.
        self.steps.reserve(rendered.files.len());
        for f in rendered.files {
            self.file_step(
                &format!("net:{}", f.path),
                &f.path,
                f.content.into_bytes(),
                Meta {
                    mode: f.mode,
                    uid: 0,
                    gid: 0,
                },
                input.clone(),
                &what,
                true,
            );
        }
        // The rendered paths, borrowed from their steps (not a copy of each); a set, as
        // primer's existing files are looked up in it one by one (a list was quadratic: 28,000
        // files of 14,000 VLANs re-rendered, 784 million comparisons).
        let wanted: std::collections::HashSet<&str> = self.steps[first..]
            .iter()
            .filter_map(|s| match &s.action {
                Action::WriteFile { path, .. } => Some(path.as_str()),
                _ => None,
            })
            .collect();
        let stale: Vec<&String> = facts
            .owned
            .get(&backend)
            .into_iter()
            .flatten()
            .filter(|p| !wanted.contains(p.as_str()))
            .collect();
        drop(wanted);
        for path in stale {
            self.steps.push(Step {
                id: format!("net-remove:{path}"),
                change: Change::Remove,
                action: Action::RemoveFile { path: path.clone() },
                why: format!("{what}: /{path} is primer's and no longer rendered").into(),
                input: None,
            });
        }
        if backend == Backend::Eni {
            self.plan_eni_source(input);
        }
    }

    /// ifupdown reads `interfaces.d` only through a `source` line in `/etc/network/interfaces`:
    /// add one (the rest of the file kept byte for byte), or create the file.
    fn plan_eni_source(&mut self, input: Option<String>) {
        const PATH: &str = "etc/network/interfaces";
        let existing = self
            .facts
            .files
            .get(PATH)
            .map(|f| (String::from_utf8_lossy(&f.content).into_owned(), f.meta));
        let sourced = |text: &str| {
            text.lines().any(|l| {
                let w: Vec<&str> = l.split_whitespace().collect();
                matches!(w.as_slice(),
                    ["source", p] if *p == format!("/{}", eni::PATH) || *p == "/etc/network/interfaces.d/*" || *p == "interfaces.d/*")
                    || matches!(w.as_slice(), ["source-directory", p] if p.trim_end_matches('/') == "/etc/network/interfaces.d" || p.trim_end_matches('/') == "interfaces.d")
            })
        };
        let (content, meta) = match existing {
            // Already sourced: an unchanged step keeps the record of this input stable.
            Some((text, meta)) if sourced(&text) => (text, meta),
            Some((mut text, meta)) => {
                if !text.is_empty() && !text.ends_with('\n') {
                    text.push('\n');
                }
                text.push_str(&format!("{HEADER}\nsource /{}\n", eni::PATH));
                (text, meta)
            }
            None => (
                format!(
                    "{HEADER}\nauto lo\niface lo inet loopback\n\nsource /etc/network/interfaces.d/*\n"
                ),
                Meta {
                    mode: 0o644,
                    uid: 0,
                    gid: 0,
                },
            ),
        };
        self.file_step(
            "net:eni-source",
            PATH,
            content.into_bytes(),
            meta,
            input,
            "network (eni): /etc/network/interfaces sources primer's file",
            true,
        );
    }
}

/// Each link of `ids` with the MAC it is matched by (empty when it has none): looked up in an
/// index built once, as `ids` may name every link (a scan of the links per id was quadratic:
/// 14,000 VLANs on NICs the target does not have yet, issue 15).
fn missing_macs<'a>(config: &'a NetworkConfig, ids: &'a [String]) -> Vec<(&'a str, &'a str)> {
    if ids.is_empty() {
        return Vec::new();
    }
    let index = crate::model::network::LinkIndex::new(config);
    ids.iter()
        .map(|id| {
            let mac = index.link(id).and_then(|l| l.mac.as_deref());
            (id.as_str(), mac.unwrap_or_default())
        })
        .collect()
}

/// The record's hash of a network step's input: the input's text (hashed into `text`), then
/// the backend's name (`state::sha256_hex` of the two joined, without joining them).
fn input_hash(text: sha2::Sha256, backend: Backend) -> String {
    use sha2::Digest;
    crate::state::hex_lower(&text.chain_update(backend.as_str().as_bytes()).finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every link missing: one index, not a scan per link. 300,000 links, scanned per link,
    /// would be 45 billion id comparisons (minutes); indexed, well under a second. The answers
    /// are the scan's (the first link of an id; a link without a MAC: empty).
    #[test]
    fn missing_macs_are_looked_up_in_linear_time() {
        use crate::model::network::{Link, LinkKind};
        let n = 300_000;
        let mut config = NetworkConfig::default();
        for i in 0..n {
            let mut l = Link::new(format!("l{i}"), LinkKind::Physical);
            l.mac = (i % 7 != 0).then(|| {
                format!(
                    "52:54:00:{:02x}:{:02x}:{:02x}",
                    i >> 16,
                    (i >> 8) & 255,
                    i & 255
                )
            });
            config.links.push(l);
        }
        // A repeated id: its first link answers.
        let mut dup = Link::new("l1", LinkKind::Physical);
        dup.mac = Some("52:54:00:ff:ff:ff".into());
        config.links.push(dup);
        let ids: Vec<String> = (0..n)
            .rev()
            .map(|i| format!("l{i}"))
            .chain(["nope".into()])
            .collect();
        let got = missing_macs(&config, &ids);
        assert_eq!(got.len(), ids.len());
        for (k, (id, mac)) in got
            .iter()
            .enumerate()
            .step_by(997)
            .chain(got.iter().enumerate().rev().take(3))
        {
            assert_eq!(*id, ids[k]);
            let want = config
                .link(id)
                .and_then(|l| l.mac.as_deref())
                .unwrap_or_default();
            assert_eq!(*mac, want, "{id}");
        }
        assert!(missing_macs(&config, &[]).is_empty());
    }

    /// `instance.json` is `serde_json`'s pretty text and a newline, whatever its size: one
    /// pass for a small document, a counted pass then an exact buffer for a large one (grown by
    /// doubling, 14,000 VLANs' 2.2 MB document reached 4 MiB at the run's peak); the large
    /// one holds no spare room.
    #[test]
    fn instance_json_is_sized_before_it_is_written() {
        use crate::model::{Format, NetworkConfig as Doc};
        let drive = DriveFiles::new("/dev/x", "iso9660");
        for n in [0usize, 3, 20_000] {
            let mut i = Instance::new(Format::OpenStack, "latest", "id-1");
            let links: Vec<serde_json::Value> = (0..n)
                .map(|k| serde_json::json!({"id": format!("l{k}"), "type": "vlan", "vlan_id": k % 4000}))
                .collect();
            i.network = vec![Doc::OpenStack {
                file: "openstack/latest/network_data.json".into(),
                data: serde_json::json!({"links": links, "networks": []}).into(),
            }];
            let got = crate::plan::instance_json(&i, &drive, "00ff");
            let mut want =
                serde_json::to_vec_pretty(&crate::plan::instance_doc(&i, &drive, "00ff")).unwrap();
            want.push(b'\n');
            assert!(got == want, "{n} links: differs");
            if n > 3 {
                assert!(got.len() > 64 << 10);
                assert_eq!(got.capacity(), got.len(), "{n} links");
            }
        }
    }

    /// The step's input hash is the one the record always held: the text and the backend
    /// joined, hashed (a change would make every re-run after an upgrade see new input).
    #[test]
    fn input_hash_is_the_joined_texts_hash() {
        for b in Backend::ALL {
            let text = br#"{"links":[]}"#;
            let mut joined = text.to_vec();
            joined.extend_from_slice(b.as_str().as_bytes());
            use sha2::Digest;
            let h = sha2::Sha256::new().chain_update(text);
            assert_eq!(input_hash(h, b), crate::state::sha256_hex(&joined));
        }
    }
}
