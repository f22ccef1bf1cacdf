//! `[probe]`: keepalive probes of quiet connections (`act::probe`). A table in the file, and
//! `--probe`, `--probe-after`, `--probe-interval`, `--probe-count` as flags; off unless enabled.
//! Connections are opted in or out one by one with `probe = true|false` in an `[[override]]`.
//! Its keys are rows of the settings catalogue, resolved like the top-level ones.

#[cfg(test)]
use std::time::Duration;

#[cfg(test)]
pub(super) use super::catalogue::{PROBE_FLAGS, PROBE_SETTINGS};
use super::{ConfigError, FileConfig, RunArgs};
use crate::act::probe::ProbeSettings;

/// Flags over the file's `[probe]` over the defaults.
///
/// # Errors
/// A value that does not parse or is out of range: one line naming the flag or `[probe] key`.
pub(super) fn resolve(args: &RunArgs, file: &FileConfig) -> Result<ProbeSettings, ConfigError> {
    let get = file.resolver(args);
    Ok(ProbeSettings {
        enabled: get.probe()?,
        after: get.probe_after()?,
        interval: get.probe_interval()?,
        count: get.probe_count()?,
        max_per_second: get.probe_max_per_second()?,
        max_per_scan: get.probe_max_per_scan()?,
    })
}

#[cfg(test)]
mod tests;
