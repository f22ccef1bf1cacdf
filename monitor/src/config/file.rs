//! The TOML file. Read as a plain table, not through serde, so every error can name its key
//! on one line. `[[override]]` and `[[ignore]]` exist only here and are parsed on read; the
//! top-level settings stay raw until `resolve`, which parses them exactly like flags.

use std::{io::Read as _, path::Path};

use super::{
    ConfigError, RunArgs,
    catalogue::{FORENSICS_SETTINGS, KUBERNETES_SETTINGS, PROBE_SETTINGS, Resolver, SETTINGS},
    enforce, path, remediate,
    setting::FileValues,
    toml_table::{
        MATCHER_KEYS, check_keys, field, matcher, matcher_keys_text, numbered_sections, sections,
    },
    values,
};
use crate::{
    act::{enforce::Enforce, remediate::policy::RemediatePolicy},
    verdict::{Matcher, Override, PathTimeout},
};

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
    /// The top-level settings and `[probe]`, keys checked against the catalogue.
    pub(super) values: FileValues,
    pub(super) overrides: Vec<Override>,
    pub(super) ignore: Vec<Matcher>,
    /// `[[remediate]]` policies, in file order.
    pub(super) remediate: Vec<RemediatePolicy>,
    /// `[[enforce]]` policies in file order (`config/enforce.rs`).
    pub(super) enforce: Vec<Enforce>,
    /// `[[path]]` middleboxes in file order (`config/path.rs`), before `path_timeout_share`.
    pub(super) paths: Vec<PathTimeout>,
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
        let probe = settings_table(&mut settings, "probe", PROBE_SETTINGS).map_err(error)?;
        let kubernetes =
            settings_table(&mut settings, "kubernetes", KUBERNETES_SETTINGS).map_err(error)?;
        let forensics =
            settings_table(&mut settings, "forensics", FORENSICS_SETTINGS).map_err(error)?;
        let remediate =
            numbered_sections(settings.remove("remediate"), "remediate", remediate::entry)
                .map_err(error)?;
        let enforce = sections(settings.remove("enforce"), "enforce", enforce::entry)
            .and_then(enforce::check_list)
            .map_err(error)?;
        let paths = sections(settings.remove("path"), "path", path::entry)
            .and_then(path::check_list)
            .map_err(error)?;
        let known: Vec<&str> = SETTINGS.iter().map(|(key, _)| *key).collect();
        check_keys(&settings, &known).map_err(error)?;
        Ok(Self {
            values: FileValues {
                path: path.to_path_buf(),
                top: settings,
                probe,
                kubernetes,
                forensics,
            },
            overrides,
            ignore,
            remediate,
            enforce,
            paths,
        })
    }
}

impl FileConfig {
    /// Resolves settings from `args` over this file over the defaults.
    pub(super) fn resolver<'a>(&'a self, args: &'a RunArgs) -> Resolver<'a> {
        Resolver {
            args,
            file: &self.values,
        }
    }
}

/// Takes the `[name]` table of catalogue settings out of the file's top level (empty when
/// absent), its keys checked against `settings`.
///
/// # Errors
/// `name` is not a table, or has a key that is not one of `settings` (the message names it).
fn settings_table(
    top: &mut toml::Table,
    name: &str,
    settings: &[(&str, &str)],
) -> Result<toml::Table, String> {
    let table = match top.remove(name) {
        None => toml::Table::new(),
        Some(toml::Value::Table(table)) => table,
        Some(_) => return Err(format!("{name}: expected a [{name}] table")),
    };
    let keys: Vec<&str> = settings.iter().map(|(key, _)| *key).collect();
    check_keys(&table, &keys).map_err(|problem| format!("[{name}]: {problem}"))?;
    Ok(table)
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
        return Err(format!("override needs {}", matcher_keys_text()));
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
        return Err(format!("ignore needs {}", matcher_keys_text()));
    }
    Ok(matcher)
}
