//! `tcp-liveness run`'s command line, built from the settings catalogue: one flag per row that
//! has one, its help ending with the row's real default. Values stay text here: `resolve` parses
//! flags and file values with the same code.

use std::path::PathBuf;

use clap::{Arg, ArgAction, Command, value_parser};

use super::{
    RunArgs,
    catalogue::CATALOGUE,
    setting::{Row, Style},
};

impl clap::Args for RunArgs {
    fn augment_args(command: Command) -> Command {
        let config = Arg::new("config")
            .long("config")
            .value_name("FILE")
            .value_parser(value_parser!(PathBuf))
            .action(ArgAction::Set)
            .help("TOML config file (keys as the flags, in snake_case); flags override it");
        command.arg(config).args(CATALOGUE.iter().filter_map(flag))
    }

    fn augment_args_for_update(command: Command) -> Command {
        Self::augment_args(command)
    }
}

/// The `--help` section of the setting `id`: the verdict thresholds, the HTTP endpoint, the
/// Alertmanager push and the active modes each together; None for the general options.
fn heading(id: &str) -> Option<&'static str> {
    const THRESHOLDS: [&str; 4] = [
        "close_wait_after",
        "fin_wait2_after",
        "unresponsive_after",
        "idle_after",
    ];
    if THRESHOLDS.contains(&id) {
        Some("Thresholds")
    } else if ["listen", "allow_remote_connections"].contains(&id) || id.starts_with("web_") {
        Some("Web")
    } else if id == "alert_log_limit" || id.starts_with("alertmanager_") {
        Some("Alertmanager")
    } else if id == "probe" || id.starts_with("probe_") {
        Some("Active modes")
    } else {
        None
    }
}

/// The flag of `row`, if it has one.
fn flag(row: &Row) -> Option<Arg> {
    let arg = Arg::new(row.id)
        .long(row.flag()?)
        .value_name(row.value_name)
        .value_parser(value_parser!(String))
        .action(ArgAction::Set)
        .help(row.help())
        .help_heading(heading(row.id));
    let arg = match row.style {
        Style::Text => arg,
        Style::Hyphen => arg.allow_hyphen_values(true),
        Style::Number => arg.allow_negative_numbers(true),
        Style::Switch => arg
            .num_args(0..=1)
            .require_equals(true)
            .default_missing_value("true"),
    };
    Some(match row.env {
        Some(env) => arg.env(env),
        None => arg,
    })
}
