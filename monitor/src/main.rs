use std::io::Write as _;

fn main() {
    if let Err(error) = monitor::cli::main() {
        // One line naming the problem, then a non-zero exit (2 for bad input). Not `eprintln!`:
        // it panics when stderr is closed, and the exit code must stay the one that says why.
        let _ = writeln!(std::io::stderr(), "tcp-liveness: {error:#}");
        std::process::exit(monitor::cli::exit_code(&error));
    }
}
