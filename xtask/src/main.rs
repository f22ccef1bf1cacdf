//! Project tasks: `cargo xtask setup | run | test | deb | bench | demo`.
//!
//! `setup` makes a fresh machine able to build and test tcp-liveness (idempotent: it only installs
//! what is missing). `run` and `test` call it first, so the README's two commands work anywhere.

mod bench;
mod deb;
mod demo;
mod setup;

use std::{
    path::PathBuf,
    process::{Command, ExitCode},
};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
use harness::command::check;

#[derive(Parser)]
#[command(about = "tcp-liveness project tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what building and testing needs (nightly rust-src, LLVM 22, bpf-linker, cargo-deb,
    /// iptables, bpftool) and mount tracefs. Safe to run again.
    Setup,
    /// Build the agent (release) and run it with its defaults; extra arguments go to `run`.
    Run {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Run every test: unit tests, the documentation drift tests, then the kernel tests (root,
    /// real programs, real connections; one installs the Debian package built first).
    Test,
    /// Build the Debian package (release binary, unit, config, manual pages, completions) and
    /// print its path.
    Deb,
    /// Measure hook cost, application overhead, scan cost and detection latency (root); prints
    /// a table (issue #5, BENCHMARKS.md).
    Bench(bench::Args),
    /// Show the agent finding a `CLOSE_WAIT` leak and a dead peer in namespaces (root, ~1 minute).
    Demo(demo::DemoArgs),
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("xtask: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.task {
        Task::Setup => setup::all(),
        Task::Demo(args) => demo::run(&args),
        Task::Run { args } => {
            setup::all()?;
            cargo(&["build", "--release", "--package", "monitor"])?;
            let status = Command::new("target/release/tcp-liveness")
                .arg("run")
                .args(&args)
                .status()
                .context("starting target/release/tcp-liveness")?;
            if !status.success() {
                bail!("tcp-liveness exited with {status}");
            }
            Ok(())
        }
        Task::Deb => {
            let package = deb::build()?;
            println!("{}", package.display());
            Ok(())
        }
        Task::Bench(args) => bench::run(&args),
        Task::Test => {
            setup::all()?;
            cargo(&["fmt", "--all", "--check"])?;
            // The eBPF crate only builds for the bpf target; aya-build compiles it from
            // monitor/build.rs, and it is linted on its own target here.
            // With the benchmark feature: it only adds code (the floor programs' loader and
            // the bench-probes example), so this lints every line of both builds.
            cargo(&[
                "clippy",
                "--workspace",
                "--exclude",
                "monitor-ebpf",
                "--all-targets",
                "--features",
                "monitor/bench",
                "--",
                "-D",
                "warnings",
            ])?;
            nightly_cargo(&[
                "clippy",
                "--package",
                "monitor-ebpf",
                "--release",
                "--target",
                "bpfel-unknown-none",
                "-Z",
                "build-std=core",
                "--features",
                "bench",
                "--",
                "-D",
                "warnings",
            ])?;
            cargo(&[
                "test",
                "--workspace",
                "--exclude",
                "monitor-ebpf",
                "--lib",
                "--bins",
            ])?;
            // The documentation against the code (alert runbooks, metric families, the `run`
            // synopsis): plain tests, no root.
            cargo(&["test", "--package", "monitor", "--test", "docs_drift"])?;
            // The package the kernel test `package` installs, built from this tree.
            let package = deb::build()?;
            // The integration tests are one binary (monitor/tests/integration). They load
            // programs and create namespaces: one at a time, so that each test's agent and
            // counts are its own.
            check(
                cargo_command()
                    .args(["test", "--package", "monitor", "--test", "integration"])
                    .args(["--", "--test-threads=1"])
                    .env(PACKAGE_ENV, package),
            )
        }
    }
}

/// The variable that gives the kernel tests the `.deb` to install (monitor/tests/integration/
/// package.rs reads it).
const PACKAGE_ENV: &str = "TCP_LIVENESS_DEB";

fn cargo(args: &[&str]) -> anyhow::Result<()> {
    check(cargo_command().args(args))
}

/// The cargo that runs xtask (`CARGO`), else the one on `PATH`.
fn cargo_command() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

/// Cargo's target directory: `CARGO_TARGET_DIR`, else `target` (xtask runs from the workspace
/// root).
fn target_dir() -> PathBuf {
    std::env::var("CARGO_TARGET_DIR").map_or_else(|_| PathBuf::from("target"), PathBuf::from)
}

/// The eBPF crate needs nightly (build-std); `rustup run` picks it whatever cargo runs xtask.
fn nightly_cargo(args: &[&str]) -> anyhow::Result<()> {
    let mut cmd = Command::new("rustup");
    cmd.args(["run", "nightly", "cargo"]).args(args);
    // Inherited from the stable cargo running xtask; it would pin the wrong rustc.
    cmd.env_remove("RUSTC").env_remove("CARGO");
    check(&mut cmd)
}
