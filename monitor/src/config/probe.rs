//! `[probe]`: keepalive probes of quiet connections (`scan::probe`). A table in the file, and
//! `--probe`, `--probe-after`, `--probe-interval`, `--probe-count` as flags; off unless enabled.
//! Connections are opted in or out one by one with `probe = true|false` in an `[[override]]`.

use std::time::Duration;

use super::{
    ConfigError, RunArgs,
    file::{FileConfig, check_keys},
    values::{self, Raw},
};
use crate::act::probe::ProbeSettings;

/// Every `[probe]` key with its default, written as a flag value; `after` empty = `idle_after`.
pub(super) const PROBE_SETTINGS: &[(&str, &str)] = &[
    ("enabled", "false"),
    ("after", ""),
    ("interval", "5s"),
    ("count", "3"),
    ("max_per_second", "20"),
    ("max_per_scan", "100"),
];

/// The `[probe]` keys that are also flags: `--probe`, `--probe-after`, …
pub(super) const PROBE_FLAGS: &[(&str, &str)] = &[
    ("enabled", "probe"),
    ("after", "probe-after"),
    ("interval", "probe-interval"),
    ("count", "probe-count"),
];

/// The keys a `[probe]` table may have.
pub(super) fn check_table(table: &toml::Table) -> Result<(), String> {
    let known: Vec<&str> = PROBE_SETTINGS.iter().map(|(key, _)| *key).collect();
    check_keys(table, &known).map_err(|problem| format!("[probe]: {problem}"))
}

/// Flags over the file's `[probe]` over the defaults.
///
/// # Errors
/// A value that does not parse or is out of range: one line naming the flag or `[probe].key`.
pub(super) fn resolve(args: &RunArgs, file: &FileConfig) -> Result<ProbeSettings, ConfigError> {
    fn value<'a>(file: &'a FileConfig, key: &'a str, flag: Option<&'a str>) -> Setting<'a> {
        Setting { key, flag, file }
    }
    Ok(ProbeSettings {
        enabled: value(file, "enabled", args.probe.as_deref()).parse(values::boolean)?,
        after: value(file, "after", args.probe_after.as_deref()).parse(|raw| match raw {
            Raw::Text("") => Ok(None),
            raw => values::threshold(raw).map(Some),
        })?,
        interval: value(file, "interval", args.probe_interval.as_deref()).parse(interval)?,
        count: value(file, "count", args.probe_count.as_deref())
            .parse(|raw| values::integer_between(raw, 1, 100))?,
        max_per_second: value(file, "max_per_second", None)
            .parse(|raw| values::integer_between(raw, 1, 10_000))?,
        max_per_scan: value(file, "max_per_scan", None)
            .parse(|raw| values::integer_between(raw, 1, 4096))?,
    })
}

/// Between probes: whole seconds (`TCP_KEEPIDLE`/`TCP_KEEPINTVL` take seconds), 1 s to 1 h.
fn interval(raw: Raw<'_>) -> Result<Duration, String> {
    let d = values::duration_between(
        raw,
        Duration::from_secs(1),
        Duration::from_hours(1),
        "1s and 1h",
    )?;
    if d.subsec_nanos() != 0 {
        return Err(format!(
            "{} is not a whole number of seconds (the kernel's keepalive timers take seconds)",
            humantime::format_duration(d)
        ));
    }
    Ok(d)
}

/// One `[probe]` key: its flag (if it has one and it was given), the file's value, the default.
struct Setting<'a> {
    key: &'a str,
    flag: Option<&'a str>,
    file: &'a FileConfig,
}

impl Setting<'_> {
    fn parse<T, U: TryFrom<T>>(
        &self,
        parse: impl Fn(Raw<'_>) -> Result<T, String>,
    ) -> Result<U, ConfigError> {
        let convert = |v: T| U::try_from(v).map_err(|_| "out of range".to_owned());
        let from_file = match self.file.probe.get(self.key) {
            Some(v) => Some(
                parse(Raw::Toml(v))
                    .and_then(convert)
                    .map_err(|p| self.file.error(&format!("[probe] {}", self.key), &p))?,
            ),
            None => None,
        };
        if let Some(text) = self.flag {
            let flag = PROBE_FLAGS
                .iter()
                .find(|(k, _)| *k == self.key)
                .map_or(self.key, |(_, f)| f);
            return parse(Raw::Text(text))
                .and_then(convert)
                .map_err(|problem| ConfigError::Flag {
                    key: flag.replace('-', "_"),
                    problem,
                });
        }
        if let Some(value) = from_file {
            return Ok(value);
        }
        let default = PROBE_SETTINGS
            .iter()
            .find(|(k, _)| *k == self.key)
            .map_or("", |(_, d)| d);
        parse(Raw::Text(default))
            .and_then(convert)
            .map_err(|problem| ConfigError::Default {
                key: format!("[probe] {}", self.key),
                problem,
            })
    }
}

#[cfg(test)]
mod tests;
