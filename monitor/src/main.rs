fn main() {
    if let Err(error) = monitor::cli::main() {
        // One line naming the problem, then a non-zero exit.
        eprintln!("tcp-liveness: {error:#}");
        // A bad setting is a usage error: exit 2, as clap does for bad flags.
        let usage = error
            .downcast_ref::<monitor::config::ConfigError>()
            .is_some();
        std::process::exit(if usage { 2 } else { 1 });
    }
}
