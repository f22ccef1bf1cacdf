fn main() {
    if let Err(error) = monitor::cli::main() {
        // One line naming the problem, then a non-zero exit (2 for bad input).
        eprintln!("tcp-liveness: {error:#}");
        std::process::exit(monitor::cli::exit_code(&error));
    }
}
