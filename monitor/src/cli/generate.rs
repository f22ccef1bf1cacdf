//! `tcp-liveness completions SHELL` and `tcp-liveness man`: shell completions and manual pages
//! generated from the command line's own definition, so they never drift from `--help`.
//!
//! Subcommands of the binary rather than build-time files: a package build runs the binary it
//! just built (`tcp-liveness man --dir debian/man`, `tcp-liveness completions bash >
//! debian/tcp-liveness.bash`), and a user without the package can still do
//! `source <(tcp-liveness completions bash)`.

use std::{io::Write as _, path::PathBuf};

use anyhow::Context as _;
use clap_complete::Shell;

#[derive(Clone, Debug, clap::Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: Shell,
}

#[derive(Clone, Debug, clap::Args)]
pub struct ManArgs {
    /// Write one page per command into this directory (tcp-liveness.1, tcp-liveness-run.1, ...)
    /// instead of printing tcp-liveness(1).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// Prints the completion script for `args.shell` on stdout.
///
/// # Errors
/// Writing to stdout failed (other than a closed pipe).
pub(super) fn completions(args: &CompletionsArgs) -> anyhow::Result<()> {
    let mut out = Vec::new();
    clap_complete::generate(args.shell, &mut super::command(), "tcp-liveness", &mut out);
    print(&out)
}

/// Prints tcp-liveness(1), or with `--dir` writes every command's page there.
///
/// # Errors
/// A page could not be written.
pub(super) fn man(args: &ManArgs) -> anyhow::Result<()> {
    let command = super::command();
    if let Some(dir) = &args.dir {
        return clap_mangen::generate_to(command, dir)
            .with_context(|| format!("writing the manual pages into {}", dir.display()));
    }
    let mut out = Vec::new();
    clap_mangen::Man::new(command).render(&mut out)?;
    print(&out)
}

fn print(bytes: &[u8]) -> anyhow::Result<()> {
    match std::io::stdout().lock().write_all(bytes) {
        // `| head` closing the pipe is not an error worth reporting.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        result => result.context("writing to stdout"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completions_know_the_subcommands_and_flags() {
        let mut out = Vec::new();
        clap_complete::generate(
            Shell::Bash,
            &mut crate::cli::command(),
            "tcp-liveness",
            &mut out,
        );
        let script = String::from_utf8(out).unwrap();
        for word in ["connections", "--suspect", "--close-wait-after", "destroy"] {
            assert!(script.contains(word), "{word} missing");
        }
    }

    #[test]
    fn man_pages_one_per_command() {
        let dir = tempfile::tempdir().unwrap();
        man(&ManArgs {
            dir: Some(dir.path().to_owned()),
        })
        .unwrap();
        let run = std::fs::read_to_string(dir.path().join("tcp-liveness-run.1")).unwrap();
        assert!(run.contains("close\\-wait\\-after"), "{run}");
        assert!(dir.path().join("tcp-liveness-connections.1").exists());
        assert!(dir.path().join("tcp-liveness.1").exists());
    }
}
