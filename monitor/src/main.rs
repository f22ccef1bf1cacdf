fn main() {
    if let Err(error) = monitor::cli::main() {
        // One line naming the problem, then a non-zero exit.
        eprintln!("tcp-liveness: {error:#}");
        std::process::exit(1);
    }
}
