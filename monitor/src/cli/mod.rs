//! Command line: `run` (the agent), `connections` and `check` (ask a running agent), `destroy`
//! (end one connection).

mod check;
mod connections;
mod destroy;
mod table;

use std::{ffi::OsStr, io::IsTerminal as _};

use clap::{Parser, Subcommand};

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
    /// Print the connections a running agent sees, ss-like.
    Connections(connections::ConnectionsArgs),
    /// Monitoring-plugin check: list the agent's alert groups; exit 0 (none), 1 (some),
    /// 3 (agent unreachable).
    Check(check::CheckArgs),
    /// End one connection (`sock_diag` `SOCK_DESTROY`, as `ss -K`): only a suspect one unless
    /// --force; exit 0 done, 1 refused or not found, 2 bad input.
    Destroy(destroy::DestroyArgs),
}

/// Parses the command line and runs the command.
///
/// # Errors
/// A bad setting (a [`config::ConfigError`]: the binary exits 2), an agent that cannot start or
/// stops on an error, or a `connections` request that fails.
pub fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
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
