//! Command line: `run` (the agent), `connections` and `check` (ask a running agent), `destroy`
//! (end one connection), `completions` and `man` (generated from this definition).

mod check;
mod connections;
mod destroy;
mod generate;
mod table;

use std::{ffi::OsStr, io::IsTerminal as _};

use clap::{CommandFactory as _, FromArgMatches as _, Parser, Subcommand, builder::StyledStr};

use crate::config::{self, LogFormat, RunArgs};

#[derive(Debug, Parser)]
#[command(
    name = "tcp-liveness",
    version,
    about = "eBPF TCP connection liveness monitor"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the agent: load the kernel probes, serve /metrics, /connections and /healthz.
    // Boxed: every setting as text makes it far larger than the other variants.
    Run(Box<RunArgs>),
    /// Print the connections a running agent sees, ss-like; --suspect for what is wrong now
    /// and why.
    Connections(connections::ConnectionsArgs),
    /// Monitoring-plugin check: list the agent's alert groups; exit 0 (none), 1 (some),
    /// 3 (agent unreachable).
    Check(check::CheckArgs),
    /// End one connection (`sock_diag` `SOCK_DESTROY`, as `ss -K`): only a suspect one unless
    /// --force; exit 0 done, 1 refused or not found, 2 bad input.
    Destroy(destroy::DestroyArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(generate::CompletionsArgs),
    /// Print the manual page, or write one per command into a directory.
    Man(generate::ManArgs),
}

/// The command line as `--help`, the manual pages and the completions show it: the definition
/// with the help texts in plain words. The doc comments clap reads mark code with backticks for
/// rustdoc; a terminal or a manual page would show them as they are.
#[must_use]
pub fn command() -> clap::Command {
    plain(Cli::command())
}

/// `command` and its subcommands with no backtick in any about or help text.
fn plain(mut command: clap::Command) -> clap::Command {
    if let Some(about) = plain_text(command.get_about()) {
        command = command.about(about);
    }
    if let Some(about) = plain_text(command.get_long_about()) {
        command = command.long_about(about);
    }
    command
        .mut_args(|mut arg| {
            if let Some(help) = plain_text(arg.get_help()) {
                arg = arg.help(help);
            }
            if let Some(help) = plain_text(arg.get_long_help()) {
                arg = arg.long_help(help);
            }
            arg
        })
        .mut_subcommands(plain)
}

/// `text` without backticks, when it has any.
fn plain_text(text: Option<&StyledStr>) -> Option<String> {
    let text = text?.to_string();
    text.contains('`').then(|| text.replace('`', ""))
}

/// Parses the command line and runs the command.
///
/// # Errors
/// A bad setting (a [`config::ConfigError`]: the binary exits 2), an agent that cannot start or
/// stops on an error, or a `connections` request that fails.
pub fn main() -> anyhow::Result<()> {
    let cli = Cli::from_arg_matches(&command().get_matches()).unwrap_or_else(|error| error.exit());
    match cli.command {
        Command::Run(args) => {
            // Before anything else: a bad config exits 2 without loading any probe.
            let config = config::load(&args)?;
            init_logging(config.log_format);
            // Before any thread starts: one descriptor per HTTP connection and BPF object.
            crate::agent::raise_open_file_limit();
            // Its threads (workers, blocking pool) parse network input: none keeps a capability.
            // The agent's start-up runs on this thread, which keeps them until it is done.
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .on_thread_start(crate::privileges::drop_all_in_thread)
                .enable_all()
                .build()?;
            // SIGHUP resolves the same flags over the file again.
            let load = Box::new(move || config::load(&args));
            Ok(runtime.block_on(crate::agent::run(config, load))?)
        }
        Command::Connections(args) => connections::run(&args),
        // Its own exit codes: main's "1 on error" would read as WARNING to a monitoring system.
        Command::Check(args) => std::process::exit(check::run(&args)),
        Command::Destroy(args) => std::process::exit(destroy::run(&args)),
        Command::Completions(args) => generate::completions(&args),
        Command::Man(args) => generate::man(&args),
    }
}

/// The exit status for an error [`main`] returned: 2 for bad input (a setting, or a `--listen`
/// address that cannot be bound), as clap does for a bad command line; 1 otherwise.
#[must_use]
pub fn exit_code(error: &anyhow::Error) -> i32 {
    let usage = error.downcast_ref::<config::ConfigError>().is_some()
        || error
            .downcast_ref::<crate::error::Error>()
            .is_some_and(crate::error::Error::is_usage);
    if usage { 2 } else { 1 }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let colour = log_colour(
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    );
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr)
        // A write that fails (stderr a closed pipe: `run 2>&1 | head`, a journald restart) is
        // dropped. tracing-subscriber would otherwise report it with `eprintln!`, which panics
        // when stderr itself is what failed, and the agent would die of its log reader's exit.
        .log_internal_errors(false);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Whether text logs carry colour codes: only on a terminal (a file or journald would store
/// the escapes), and never when `NO_COLOR` is set to anything but empty (<https://no-color.org>).
fn log_colour(stderr_is_terminal: bool, no_color: Option<&OsStr>) -> bool {
    stderr_is_terminal && no_color.is_none_or(OsStr::is_empty)
}

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;

    use super::log_colour;

    /// What a person reads in `--help` and the manual: plain words, every subcommand's flags
    /// included.
    #[test]
    fn help_has_no_markdown_and_groups_the_run_flags() {
        let mut command = super::command();
        let mut help = command.render_long_help().to_string();
        for name in [
            "run",
            "connections",
            "check",
            "destroy",
            "completions",
            "man",
        ] {
            let sub = command.find_subcommand_mut(name).expect(name);
            help += &sub.render_long_help().to_string();
        }
        assert!(!help.contains('`'), "{help}");
        let run = command
            .find_subcommand_mut("run")
            .unwrap()
            .render_help()
            .to_string();
        for heading in ["Thresholds:", "Web:", "Alertmanager:", "Active modes:"] {
            assert!(run.contains(heading), "{heading} in {run}");
        }
        let thresholds = &run[run.find("Thresholds:").unwrap()..];
        let section = &thresholds[..thresholds.find("\n\n").unwrap_or(thresholds.len())];
        assert!(section.contains("--close-wait-after"), "{section}");
        assert!(!section.contains("--listen"), "{section}");
    }

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(log_colour(true, None));
        assert!(
            log_colour(true, Some(OsStr::new(""))),
            "empty NO_COLOR is unset"
        );
        assert!(
            !log_colour(false, None),
            "a file or journald gets no escapes"
        );
        assert!(!log_colour(true, Some(OsStr::new("1"))));
    }
}
