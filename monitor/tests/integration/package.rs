//! The Debian package (`cargo xtask deb`), installed as an operator would: `dpkg -i` puts the
//! binary, the systemd unit, the config file (a conffile), the manual pages and the completions
//! where Debian expects them; the agent starts from the unit's own `ExecStart` and serves; `dpkg
//! --purge` removes every file again.
//!
//! The package is the one `cargo xtask test` builds from this tree, given in `TCP_LIVENESS_DEB`.
//! systemd is not PID 1 on the build machines: the maintainer scripts must install and purge
//! there too (they only enable the unit: its links, no start), and the test runs the `ExecStart`
//! command line itself.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use harness::{
    agent::Launch,
    command::run_quietly,
    ports::free_port,
    privilege::{self, Need},
    wait::wait_for,
};

use crate::common::{SCANS_TO_SHOW, have, output_text, verify_unit};

/// The Debian package's name (`[package.metadata.deb]` in monitor/Cargo.toml).
const PACKAGE: &str = "tcp-liveness";
/// The variable `cargo xtask test` sets to the `.deb` it built.
const PACKAGE_ENV: &str = "TCP_LIVENESS_DEB";
const BINARY: &str = "/usr/bin/tcp-liveness";
const CONFIG: &str = "/etc/tcp-liveness/tcp-liveness.toml";
/// Every file the package installs but the unit, whose directory (`/lib` or `/usr/lib`) is
/// cargo-deb's choice ([`UNIT_SUFFIX`]), and the subcommands' manual pages ([`expected_files`]).
const FILES: &[&str] = &[
    BINARY,
    CONFIG,
    "/usr/share/man/man1/tcp-liveness.1.gz",
    "/usr/share/bash-completion/completions/tcp-liveness",
    "/usr/share/zsh/vendor-completions/_tcp-liveness",
    "/usr/share/fish/vendor_completions.d/tcp-liveness.fish",
    "/usr/share/doc/tcp-liveness/copyright",
    "/usr/share/doc/tcp-liveness/README.md",
];
const UNIT_SUFFIX: &str = "/systemd/system/tcp-liveness.service";
/// The link that enabling the unit makes (`WantedBy=multi-user.target`), systemd running or not.
const WANTS_LINK: &str = "/etc/systemd/system/multi-user.target.wants/tcp-liveness.service";

/// Every file the package must install: [`FILES`] and a manual page per subcommand of the
/// command line (`tcp-liveness-run.1.gz`, …), as `tcp-liveness man --dir` writes them.
fn expected_files() -> Vec<String> {
    let pages = monitor::cli::command()
        .get_subcommands()
        .map(|sub| format!("/usr/share/man/man1/tcp-liveness-{}.1.gz", sub.get_name()))
        .collect::<Vec<_>>();
    assert!(pages.len() > 3, "subcommands: {pages:?}");
    FILES.iter().map(|f| (*f).to_owned()).chain(pages).collect()
}

/// The `.deb` to install, or None (skip; a failure under `CI=true`) when none was given.
fn package_file(test: &str) -> Option<PathBuf> {
    let why = match std::env::var_os(PACKAGE_ENV) {
        Some(path) if Path::new(&path).is_file() => return Some(PathBuf::from(path)),
        Some(path) => format!("{PACKAGE_ENV}={} is not a file", path.to_string_lossy()),
        None => format!(
            "{PACKAGE_ENV} is not set (`cargo xtask test` builds the package and sets it; by \
             hand: `cargo xtask deb`, then {PACKAGE_ENV}=the path it prints)"
        ),
    };
    // Called for its message (and, under CI, its failure): it returns false.
    let _ = privilege::skip(test, &why);
    None
}

/// The package while this test has it installed: purged when dropped, so a failing test leaves
/// nothing behind.
struct Installed;

impl Installed {
    /// `dpkg -i deb`, after purging what an interrupted earlier run may have left installed.
    fn new(deb: &Path) -> Self {
        run_quietly("dpkg", &["--purge", PACKAGE]);
        let out = Command::new("dpkg")
            .arg("-i")
            .arg(deb)
            .output()
            .expect("run dpkg -i");
        let installed = Self;
        assert!(out.status.success(), "dpkg -i: {}", output_text(&out));
        installed
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        run_quietly("dpkg", &["--purge", PACKAGE]);
    }
}

/// `dpkg-query`'s or `dpkg`'s stdout for `args`, which must succeed.
fn query(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        output_text(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The words of the unit's `ExecStart=` line (it has no quoting and no `-`/`@` prefix).
fn exec_start(unit: &str) -> Vec<String> {
    let text = fs::read_to_string(unit).expect("read the installed unit");
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("the unit has ExecStart=");
    assert!(!line.contains(['"', '\'']), "quoted ExecStart: {line}");
    line.split_whitespace().map(str::to_owned).collect()
}

/// `scan_interval` of the installed config file: the cadence the unit's agent runs at.
fn configured_scan_interval() -> Duration {
    let text = fs::read_to_string(CONFIG).expect("read the installed config");
    let table: toml::Table = toml::from_str(&text).expect("the config is TOML");
    let value = table["scan_interval"].as_str().expect("scan_interval");
    humantime::parse_duration(value).expect("scan_interval is a duration")
}

#[test]
fn deb_installs_serves_and_purges() {
    let name = "deb_installs_serves_and_purges";
    if !privilege::may_run(name, Need::RootAndKernelBtf) || !have("dpkg", "Debian") {
        return;
    }
    let Some(deb) = package_file(name) else {
        return;
    };
    let installed = Installed::new(&deb);
    let files = expected_files();
    let unit = assert_installed(&files);
    let version = query(BINARY, &["--version"]);
    assert_eq!(
        version.trim(),
        format!("tcp-liveness {}", env!("CARGO_PKG_VERSION"))
    );
    if have("systemd-analyze", "Debian package systemd") {
        verify_unit(Path::new(&unit));
    }
    serve_as_the_unit_starts_it(&unit);

    let out = Command::new("dpkg")
        .args(["--purge", PACKAGE])
        .output()
        .expect("run dpkg --purge");
    assert!(out.status.success(), "dpkg --purge: {}", output_text(&out));
    drop(installed);
    let left: Vec<&str> = files
        .iter()
        .map(String::as_str)
        .chain([unit.as_str(), WANTS_LINK, "/etc/tcp-liveness"])
        .filter(|f| fs::symlink_metadata(f).is_ok())
        .collect();
    assert!(left.is_empty(), "left after dpkg --purge: {left:?}");
}

/// Asserts that `dpkg -L` lists every one of `files` and a unit, that the config is a conffile
/// and that the unit is enabled; returns the unit's path.
fn assert_installed(files: &[String]) -> String {
    let listing = query("dpkg", &["-L", PACKAGE]);
    let listed: Vec<&str> = listing.lines().collect();
    for file in files {
        assert!(
            listed.contains(&file.as_str()),
            "dpkg -L has no {file}:\n{listing}"
        );
    }
    let conffiles = query("dpkg-query", &["-W", "-f=${Conffiles}", PACKAGE]);
    assert!(conffiles.contains(CONFIG), "conffiles: {conffiles}");
    // Enabled at install although systemd is not running: the maintainer scripts made the link.
    assert!(fs::symlink_metadata(WANTS_LINK).is_ok(), "no {WANTS_LINK}");
    listed
        .into_iter()
        .find(|l| l.ends_with(UNIT_SUFFIX))
        .unwrap_or_else(|| panic!("dpkg -L has no unit:\n{listing}"))
        .to_owned()
}

/// Runs the installed `unit`'s `ExecStart` command line until `/healthz` answers 200 and
/// `/metrics` has the agent's families, then stops it (SIGTERM, exit 0). As root: the unit's
/// user and capabilities are tested in `deploy_manifests.rs`.
fn serve_as_the_unit_starts_it(unit: &str) {
    let exec = exec_start(unit);
    assert_eq!(exec[..2], [BINARY, "run"], "ExecStart: {exec:?}");
    let deadline = configured_scan_interval() * SCANS_TO_SHOW;
    // Only what a test needs on top of the unit's command line: a free loopback port, for the
    // config's 0.0.0.0:9977 may be taken (another agent), and a temporary runtime directory,
    // for no systemd makes the unit's `RuntimeDirectory=` here and the host's /run/tcp-liveness
    // is not the test's to write or leave behind.
    let runtime_dir = tempfile::tempdir().expect("tempdir");
    let runtime = runtime_dir.path().to_str().expect("UTF-8 temp path");
    let mut args: Vec<&str> = exec[2..].iter().map(String::as_str).collect();
    args.extend(["--runtime-dir", runtime]);
    let mut agent = Launch::new(&exec[0], free_port().expect("a free loopback port"))
        .args(&args)
        .ready_within(deadline)
        .start()
        .expect("the installed agent answers /healthz");
    wait_for("tcp_liveness_ families in /metrics", deadline, || {
        let metrics = agent.try_get("/metrics").ok()?;
        metrics
            .lines()
            .any(|l| l.starts_with("# TYPE tcp_liveness_"))
            .then_some(())
    });
    let status = agent.stop().expect("agent stops after SIGTERM");
    assert!(status.success(), "agent exit status after SIGTERM");
}
