//! Reading the sections of the TOML file: unknown keys named with a guess, `[[name]]` lists
//! numbered in errors, optional keys parsed by the value parsers, the connection matcher every
//! section shares.

use super::values::{self, Raw};
use crate::verdict::Matcher;

/// The keys of a connection matcher, which `[[override]]`, `[[ignore]]`, `[[remediate]]` and
/// `[[enforce]]` share.
pub(super) const MATCHER_KEYS: [&str; 4] = ["local_port", "remote_port", "process", "cgroup"];

/// Checks that `table` has only `known` keys; the error names the first other one, with a guess
/// at what was meant (the flag spelling, or a truncated name).
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
pub(super) fn numbered_sections<T>(
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

/// The matcher keys of a section (all optional; the caller decides whether none is allowed).
pub(super) fn matcher(table: &toml::Table) -> Result<Matcher, String> {
    Ok(Matcher {
        local_port: field(table, "local_port", values::port)?,
        remote_port: field(table, "remote_port", values::port)?,
        process: field(table, "process", values::process)?,
        cgroup: field(table, "cgroup", values::cgroup)?,
    })
}
