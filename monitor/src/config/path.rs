//! `[[path]]` sections: middleboxes that forget idle flows (file only, a list has no flag).
//! Each names its peers by range and optionally by port; `path_timeout_share` (a top-level
//! setting) turns each timeout into the idle time at which connections are reported.

use std::time::Duration;

use super::{
    enforce,
    toml_table::{check_keys, field},
    values::{self, Raw},
};
use crate::verdict::{Cidr, PathTimeout, Share, conntrack::CONNTRACK_PATH};

const PATH_KEYS: [&str; 5] = ["cidr", "local_port", "remote_port", "idle_timeout", "name"];

/// One `[[path]]` table; `report_after` is left at the timeout until [`apply_share`].
pub(super) fn entry(table: &toml::Table) -> Result<PathTimeout, String> {
    check_keys(table, &PATH_KEYS)?;
    let remote = field(table, "cidr", cidr)?
        .ok_or("cidr is missing (the peers behind the middlebox, e.g. \"10.0.0.0/8\")")?;
    let idle_timeout = field(table, "idle_timeout", idle_timeout)?.ok_or(
        "idle_timeout is missing (when the middlebox forgets an idle flow, e.g. \"350s\")",
    )?;
    let name = match field(table, "name", enforce::name)? {
        Some(name) => name.to_string(),
        None => remote.to_string(),
    };
    if name == CONNTRACK_PATH {
        return Err(format!(
            "name {CONNTRACK_PATH:?} is the agent's own (conntrack on this host)"
        ));
    }
    Ok(PathTimeout {
        name,
        remote,
        local_port: field(table, "local_port", values::port)?,
        remote_port: field(table, "remote_port", values::port)?,
        idle_timeout,
        report_after: idle_timeout,
    })
}

/// The list as a whole: names unique (each is a label value of one series).
pub(super) fn check_list(paths: Vec<PathTimeout>) -> Result<Vec<PathTimeout>, String> {
    for (i, p) in paths.iter().enumerate() {
        if paths[..i].iter().any(|q| q.name == p.name) {
            return Err(format!(
                "[[path]] #{}: name {:?} is used twice",
                i + 1,
                p.name
            ));
        }
    }
    Ok(paths)
}

/// `paths` with each `report_after` set to `share` of its timeout, computed once per policy
/// so the rule compares two durations per connection.
pub(super) fn apply_share(paths: &[PathTimeout], share: Share) -> Vec<PathTimeout> {
    paths
        .iter()
        .map(|p| PathTimeout {
            report_after: share.of(p.idle_timeout),
            ..p.clone()
        })
        .collect()
}

fn cidr(raw: Raw<'_>) -> Result<Cidr, String> {
    Cidr::parse(values::string(raw)?)
}

/// Middlebox timeouts run from seconds (a test's conntrack) to days (a tuned conntrack).
fn idle_timeout(raw: Raw<'_>) -> Result<Duration, String> {
    values::duration_between(
        raw,
        Duration::from_secs(1),
        Duration::from_hours(720),
        "1s and 30 days",
    )
}

/// `path_timeout_share`: a fraction (`0.8`), as TOML float or text.
pub(super) fn share(raw: Raw<'_>) -> Result<Share, String> {
    match raw {
        Raw::Text(text) => Share::parse(text),
        Raw::Toml(toml::Value::Float(value)) => Share::parse(&value.to_string()),
        Raw::Toml(toml::Value::Integer(value)) => Share::parse(&value.to_string()),
        Raw::Toml(toml::Value::String(text)) => Share::parse(text),
        Raw::Toml(other) => Err(format!(
            "expected a share such as 0.8, got {}",
            other.type_str()
        )),
    }
}

#[cfg(test)]
mod tests;
