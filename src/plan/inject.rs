//! Injected files (OpenStack `meta_data.json` `files`) and the drive's entropy seed, planned once
//! per instance. Pure: paths are validated by `placement` (absolute on the instance, no `..`,
//! never into primer's state, /proc, /sys or /dev, never onto the account files); the writer
//! additionally keeps every write inside the root. The seed's bytes never appear in a why, a warning or the plan's JSON.

use super::{Action, Change, Meta, Planner, Step};
use crate::model::{Instance, Secret};

/// The path relative to the root for an injected file's (or a `write_files` entry's)
/// destination, or why it is refused: the rule set homes share (`placement`), where a file may
/// go into /etc but never onto the account files or into primer's state.
pub fn injected_path(path: &str) -> Result<String, String> {
    super::placement::target_path(path, super::placement::Use::File)
}

/// Lower-case hex of a digest: one helper for the whole crate (`state::hex_lower`).
pub use crate::state::hex_lower;

impl Planner<'_> {
    pub(super) fn plan_injected_files(&mut self, instance: &Instance, mode: u32) {
        for f in &instance.files {
            let rel = match injected_path(&f.path) {
                Ok(r) => r,
                Err(e) => {
                    self.warnings.warn("meta_data.json", "files", e);
                    continue;
                }
            };
            let Some(content) = &f.content else {
                // Already reported by the source as a missing content file.
                continue;
            };
            // The buffer's digest, computed once: the step's own digest and the local copy's
            // (the same shared buffer) reuse it.
            let input = Some(hex_lower(&content.0.sha256()));
            self.file_step(
                &format!("file:{rel}"),
                &rel,
                content.0.clone(),
                Meta {
                    mode,
                    uid: 0,
                    gid: 0,
                },
                input,
                &format!("injected file {} from {}", f.path, f.content_path),
                true,
            );
        }
    }

    /// `random_seed` into the kernel's pool, once per instance, live systems only.
    pub(super) fn plan_entropy(&mut self, instance: &Instance) {
        let Some(seed) = &instance.random_seed else {
            return;
        };
        if seed.is_empty() {
            return;
        }
        let id = "entropy";
        // Keyed: the record holds no plain digest of the seed.
        let key = self.state_key();
        let input = super::password::keyed_hex(&key, &[b"random-seed", seed.expose()]);
        let (change, why, input) = if !self.facts.live {
            (
                Change::Skip,
                format!(
                    "random_seed ({} bytes): not a live system; nothing to seed",
                    seed.len()
                ),
                None,
            )
        } else if self.applied_before(id, &input) {
            (
                Change::Unchanged,
                "random_seed already added to the kernel's pool for this instance".to_string(),
                Some(input),
            )
        } else {
            (
                Change::Update,
                format!(
                    "random_seed: {} bytes into the kernel's entropy pool",
                    seed.len()
                ),
                Some(input),
            )
        };
        self.steps.push(Step {
            id: id.into(),
            change,
            action: Action::SeedEntropy {
                bytes: seed.len(),
                data: Secret::new(seed.expose().to_vec()),
            },
            why: why.into(),
            input: input.map(Into::into),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state;

    #[test]
    fn injected_paths() {
        assert_eq!(injected_path("/etc/motd").unwrap(), "etc/motd");
        assert_eq!(
            injected_path("/root/.ssh/config").unwrap(),
            "root/.ssh/config"
        );
        for bad in [
            "etc/motd",
            "/etc/../../x",
            "/../x",
            "/etc/./x",
            "/etc//x",
            "/etc/",
            "/",
            "",
            "/proc/sys/kernel/x",
            "/dev/sda",
            format!("/{}/instance/x/applied.json", state::STATE_DIR).as_str(),
            "/a\0b",
        ] {
            assert!(injected_path(bad).is_err(), "{bad:?} accepted");
        }
        assert!(injected_path(&format!("/{}", "a".repeat(5000))).is_err());
    }
}
