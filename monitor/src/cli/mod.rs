//! Command line: `run` (the agent) and `connections` (ask a running agent).

pub mod connections;

use clap::{Parser, Subcommand};

use crate::config::{LogFormat, RunConfig};

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
    Run(RunConfig),
    /// Print the connections a running agent sees, ss-like.
    Connections(connections::ConnectionsArgs),
}

pub fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(config) => {
            init_logging(config.log_format);
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            runtime.block_on(crate::agent::run(config))
        }
        Command::Connections(args) => connections::run(&args),
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
