//! The TOML file. Read as a plain table, not through serde, so every error can name its key
//! on one line. `[[override]]` and `[[ignore]]` exist only here and are parsed on read; the
//! top-level settings stay raw until `resolve`, which parses them exactly like flags.

use std::{
    io::Read as _,
    path::{Path, PathBuf},
};

use super::{
    ConfigError, SETTINGS,
    values::{self, Raw},
};
use crate::{
    act::{enforce::Enforce, remediate::policy::RemediatePolicy},
    verdict::{Matcher, Override},
};

pub(super) const MATCHER_KEYS: [&str; 4] = ["local_port", "remote_port", "process", "cgroup"];
/// What an `[[override]]` may set besides thresholds: `probe = true|false` (`[probe]` opt-in).
const OVERRIDE_SWITCH_KEYS: [&str; 1] = ["probe"];
const THRESHOLD_KEYS: [&str; 4] = [
    "close_wait_after",
    "fin_wait2_after",
    "unresponsive_after",
    "idle_after",
];

/// The largest config file read, in bytes: a real one is a few KiB even with hundreds of
/// `[[override]]` sections.
pub(crate) const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// A parsed config file; `FileConfig::default()` stands for "no file".
#[derive(Clone, Debug, Default)]
pub struct FileConfig {
    path: PathBuf,
    /// Top-level settings, names checked against [`SETTINGS`], values not yet parsed.
    settings: toml::Table,
    pub(super) overrides: Vec<Override>,
    pub(super) ignore: Vec<Matcher>,
    /// The `[probe]` table, keys checked, values not yet parsed (empty: none).
    pub(super) probe: toml::Table,
    /// `[[remediate]]` policies, in file order.
    pub(super) remediate: Vec<RemediatePolicy>,
    /// `[[enforce]]` policies in file order (`config/enforce.rs`).
    pub(super) enforce: Vec<Enforce>,
}

impl FileConfig {
    /// Reads and [`parse`](Self::parse)s the file at `path`, at most [`MAX_FILE_BYTES`] of it.
    ///
    /// # Errors
    /// [`ConfigError::Read`] when it cannot be read (or is not UTF-8), [`ConfigError::File`]
    /// when it is larger than the limit (`--config /dev/zero` would otherwise fill memory) or
    /// does not parse.
    pub fn read(path: &Path) -> Result<Self, ConfigError> {
        let read_error = |source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        };
        let mut text = String::new();
        std::fs::File::open(path)
            .and_then(|file| file.take(MAX_FILE_BYTES + 1).read_to_string(&mut text))
            .map_err(read_error)?;
        if text.len() as u64 > MAX_FILE_BYTES {
            return Err(ConfigError::in_file(
                path,
                format!(
                    "larger than {} KiB, the most a config file may be",
                    MAX_FILE_BYTES / 1024
                ),
            ));
        }
        Self::parse(path, &text)
    }

    /// `path` is only used in messages.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let error = |message: String| ConfigError::in_file(path, message);
        let mut settings: toml::Table = text.parse().map_err(|e| error(syntax(text, &e)))?;
        let overrides =
            sections(settings.remove("override"), "override", override_entry).map_err(error)?;
        let ignore = sections(settings.remove("ignore"), "ignore", ignore_entry).map_err(error)?;
        let probe = match settings.remove("probe") {
            None => toml::Table::new(),
            Some(toml::Value::Table(table)) => table,
            Some(_) => return Err(error("probe: expected a [probe] table".into())),
        };
        super::probe::check_table(&probe).map_err(error)?;
        let remediate = numbered_sections(
            settings.remove("remediate"),
            "remediate",
            super::remediate::entry,
        )
        .map_err(error)?;
        let enforce = sections(settings.remove("enforce"), "enforce", super::enforce::entry)
            .and_then(super::enforce::check_list)
            .map_err(error)?;
        let known: Vec<&str> = SETTINGS.iter().map(|(key, _)| *key).collect();
        check_keys(&settings, &known).map_err(error)?;
        Ok(Self {
            path: path.to_path_buf(),
            settings,
            overrides,
            ignore,
            probe,
            remediate,
            enforce,
        })
    }

    pub(super) fn get(&self, key: &str) -> Option<&toml::Value> {
        self.settings.get(key)
    }

    pub(super) fn error(&self, key: &str, problem: &str) -> ConfigError {
        ConfigError::in_file(&self.path, format!("{key}: {problem}"))
    }
}

/// toml's message can span lines (with a source excerpt); keep its text and the line number.
fn syntax(text: &str, error: &toml::de::Error) -> String {
    let message: Vec<&str> = error
        .message()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let line = error
        .span()
        .and_then(|span| text.get(..span.start))
        .map(|before| before.matches('\n').count() + 1);
    match line {
        Some(line) => format!("line {line}: {}", message.join("; ")),
        None => message.join("; "),
    }
}

pub(super) fn check_keys(table: &toml::Table, known: &[&str]) -> Result<(), String> {
    match table.keys().find(|k| !known.contains(&k.as_str())) {
        None => Ok(()),
        Some(key) => {
            // Catch the likely slips: flag spelling (kebab-case) and a truncated name.
            let snake = key.replace('-', "_");
            let guess = known
                .iter()
                .find(|k| **k == snake || (snake.len() >= 3 && k.starts_with(&snake)));
            Err(match guess {
                Some(guess) => format!("unknown key {key:?} (did you mean {guess}?)"),
                None => format!("unknown key {key:?}"),
            })
        }
    }
}

/// `[[name]]` sections, each parsed by `entry`; errors say which one (1-based, as in the file).
pub(super) fn sections<T>(
    value: Option<toml::Value>,
    name: &str,
    entry: fn(&toml::Table) -> Result<T, String>,
) -> Result<Vec<T>, String> {
    let items = match value {
        None => return Ok(Vec::new()),
        Some(toml::Value::Array(items)) => items,
        // `[override]` instead of `[[override]]`: a single table, easy to write by mistake.
        Some(_) => {
            return Err(format!(
                "{name}: expected [[{name}]] sections (double brackets)"
            ));
        }
    };
    let at = |n: usize, problem: String| format!("[[{name}]] #{n}: {problem}");
    items
        .iter()
        .enumerate()
        .map(|(i, item)| match item {
            toml::Value::Table(table) => entry(table).map_err(|p| at(i + 1, p)),
            _ => Err(at(i + 1, "expected a table".into())),
        })
        .collect()
}

/// [`sections`] whose `entry` is also told the section's 1-based number (policies name
/// themselves by it).
fn numbered_sections<T>(
    value: Option<toml::Value>,
    name: &str,
    entry: fn(usize, &toml::Table) -> Result<T, String>,
) -> Result<Vec<T>, String> {
    let tables = sections(value, name, |table| Ok(table.clone()))?;
    let at = |n: usize, problem: String| format!("[[{name}]] #{n}: {problem}");
    (1..)
        .zip(&tables)
        .map(|(n, table)| entry(n, table).map_err(|p| at(n, p)))
        .collect()
}

/// An optional key of a section, parsed; the error names the key.
pub(super) fn field<T>(
    table: &toml::Table,
    key: &str,
    parse: fn(Raw<'_>) -> Result<T, String>,
) -> Result<Option<T>, String> {
    table
        .get(key)
        .map(|v| parse(Raw::Toml(v)).map_err(|p| format!("{key}: {p}")))
        .transpose()
}

pub(super) fn matcher(table: &toml::Table) -> Result<Matcher, String> {
    Ok(Matcher {
        local_port: field(table, "local_port", values::port)?,
        remote_port: field(table, "remote_port", values::port)?,
        process: field(table, "process", values::process)?,
        cgroup: field(table, "cgroup", values::cgroup)?,
    })
}

fn override_entry(table: &toml::Table) -> Result<Override, String> {
    check_keys(
        table,
        &[
            &MATCHER_KEYS[..],
            &THRESHOLD_KEYS[..],
            &OVERRIDE_SWITCH_KEYS[..],
        ]
        .concat(),
    )?;
    let threshold = |key| field(table, key, values::threshold);
    let entry = Override {
        matcher: matcher(table)?,
        close_wait_after: threshold("close_wait_after")?,
        fin_wait2_after: threshold("fin_wait2_after")?,
        unresponsive_after: threshold("unresponsive_after")?,
        idle_after: threshold("idle_after")?,
        probe: field(table, "probe", values::boolean)?,
    };
    // Without a matcher it would silently replace the defaults for every connection.
    if entry.matcher == Matcher::default() {
        return Err("override needs local_port, remote_port, process or cgroup".into());
    }
    if THRESHOLD_KEYS
        .iter()
        .chain(&OVERRIDE_SWITCH_KEYS)
        .all(|key| !table.contains_key(*key))
    {
        return Err(format!(
            "override sets nothing (one of {}, {})",
            THRESHOLD_KEYS.join(", "),
            OVERRIDE_SWITCH_KEYS.join(", ")
        ));
    }
    Ok(entry)
}

fn ignore_entry(table: &toml::Table) -> Result<Matcher, String> {
    check_keys(table, &MATCHER_KEYS)?;
    let matcher = matcher(table)?;
    // An empty matcher would ignore everything: surely not what was meant.
    if matcher == Matcher::default() {
        return Err("ignore needs local_port, remote_port, process or cgroup".into());
    }
    Ok(matcher)
}
