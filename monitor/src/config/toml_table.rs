//! Reading the sections of the TOML file: unknown keys named with a guess, `[[name]]` lists
//! numbered in errors, optional keys parsed by the value parsers, the connection matcher every
//! section shares.

use super::values::{self, Raw};
use crate::verdict::Matcher;

/// The keys of a connection matcher, which `[[override]]`, `[[ignore]]`, `[[remediate]]` and
/// `[[enforce]]` share.
pub(super) const MATCHER_KEYS: [&str; 6] = [
    "local_port",
    "remote_port",
    "process",
    "cgroup",
    "pod_namespace",
    "pod_name_prefix",
];

/// Checks that `table` has only `known` keys; the error names the first other one, with a guess
/// at what was meant (the flag spelling, a truncated name, or else the closest key by edit
/// distance: a typo).
pub(super) fn check_keys(table: &toml::Table, known: &[&str]) -> Result<(), String> {
    match table.keys().find(|k| !known.contains(&k.as_str())) {
        None => Ok(()),
        Some(key) => {
            // Catch the likely slips: flag spelling (kebab-case) and a truncated name.
            let snake = key.replace('-', "_");
            let guess = known
                .iter()
                .find(|k| **k == snake || (snake.len() >= 3 && k.starts_with(&snake)))
                .or_else(|| closest(&snake, known));
            Err(match guess {
                Some(guess) => format!("unknown key {key:?} (did you mean {guess}?)"),
                None => format!("unknown key {key:?}"),
            })
        }
    }
}

/// The known key nearest to `key` by edit distance, if near enough to be a typo of it: at most
/// one edit per three characters (`close_wiat_after`, `scan_intervall`), never a different word.
fn closest<'k>(key: &str, known: &'k [&'k str]) -> Option<&'k &'k str> {
    let most = (key.chars().count() / 3).max(1);
    known
        .iter()
        .map(|k| (edit_distance(key, k), k))
        .filter(|(distance, _)| *distance <= most)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, k)| k)
}

/// Levenshtein distance: the fewest single-character insertions, deletions and substitutions
/// that turn `a` into `b`, row by row.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
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

/// The matcher keys as a sentence names them: `local_port, …, pod_namespace or pod_name_prefix`.
pub(super) fn matcher_keys_text() -> String {
    let (last, rest) = MATCHER_KEYS.split_last().expect("matcher keys");
    format!("{} or {last}", rest.join(", "))
}

/// The matcher keys of a section (all optional; the caller decides whether none is allowed).
pub(super) fn matcher(table: &toml::Table) -> Result<Matcher, String> {
    Ok(Matcher {
        local_port: field(table, "local_port", values::port)?,
        remote_port: field(table, "remote_port", values::port)?,
        process: field(table, "process", values::process)?,
        cgroup: field(table, "cgroup", values::cgroup)?,
        pod_namespace: field(table, "pod_namespace", values::pod_namespace)?,
        pod_name_prefix: field(table, "pod_name_prefix", values::pod_name_prefix)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distances() {
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("close_wiat_after", "close_wait_after"), 2);
        assert_eq!(edit_distance("same", "same"), 0);
    }

    #[test]
    fn a_typo_gets_the_closest_key_and_another_word_none() {
        let known = ["close_wait_after", "scan_interval", "listen"];
        assert_eq!(
            closest("close_wiat_after", &known),
            Some(&"close_wait_after")
        );
        assert_eq!(closest("scan_intervall", &known), Some(&"scan_interval"));
        assert_eq!(closest("lisen", &known), Some(&"listen"));
        assert_eq!(closest("colour", &known), None);
        let table: toml::Table = toml::from_str("scan_intervall = \"5s\"").unwrap();
        assert_eq!(
            check_keys(&table, &known),
            Err(r#"unknown key "scan_intervall" (did you mean scan_interval?)"#.to_owned())
        );
    }
}
