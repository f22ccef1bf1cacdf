//! The catalogue's defaults are the ones the rooms below config use on their own (tests and
//! library users build `Thresholds`, `Grouping`, `ProbeSettings` and the server `Limits` from
//! `Default`), and its flags are all distinct.

use std::collections::BTreeSet;

use super::*;
use crate::{
    act::probe::ProbeSettings,
    config::{FileConfig, RunConfig},
    export::http::limits::Limits,
    model::Grouping,
    verdict::Thresholds,
};

fn defaults() -> RunConfig {
    RunConfig::resolve(&RunArgs::default(), &FileConfig::default()).expect("defaults are valid")
}

#[test]
fn defaults_are_the_lower_rooms_defaults() {
    let c = defaults();
    assert_eq!(c.policy.defaults, Thresholds::default());
    assert_eq!(c.grouping(), Grouping::default());
    assert_eq!(c.probe, ProbeSettings::default());
    let limits = Limits::default();
    assert_eq!(
        (c.max_connections, c.max_connections_per_client),
        (limits.max_connections, limits.max_connections_per_client)
    );
}

#[test]
fn ids_keys_and_flags_are_distinct() {
    let ids: BTreeSet<_> = CATALOGUE.iter().map(|row| row.id).collect();
    assert_eq!(ids.len(), CATALOGUE.len());
    let keys: BTreeSet<_> = CATALOGUE.iter().map(Row::file_key).collect();
    assert_eq!(keys.len(), CATALOGUE.len());
    let flags: Vec<_> = CATALOGUE.iter().filter_map(Row::flag).collect();
    let distinct: BTreeSet<_> = flags.iter().collect();
    assert_eq!(distinct.len(), flags.len());
    assert_eq!(PROBE_SETTINGS.len(), 6);
    assert_eq!(PROBE_FLAGS.len(), 4);
}
