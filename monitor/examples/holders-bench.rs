//! Cost of one `iter/task_file` pass (every TCP socket descriptor of every process, one pass
//! over all namespaces) against the per-namespace `iter/tcp` read, with the same sockets held in
//! one namespace or spread over many. Needs root; creates and deletes its own namespaces.
//!
//! `cargo run --release -p monitor --example holders-bench [-- [--probe-reads]
//! SOCKETS:NAMESPACES ...]` (default `10000:1 10000:50 100000:10`; `--probe-reads`: the program
//! reads `tcp_sock` fields with probe reads, as on kernels without `bpf_rdonly_cast`).
//!
//! The sockets are loopback connections (both ends held) made by child processes of this one
//! (the same binary, `--hold NETNS CONNECTIONS`), each inside one namespace: a process may hold
//! at most its hard `RLIMIT_NOFILE` descriptors, which it cannot raise without
//! `CAP_SYS_RESOURCE`, so the sockets are spread over as many children as that takes.

use std::{
    fs::File,
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::{TcpListener, TcpStream},
    os::fd::AsRawFd as _,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use harness::netns::Netns as TestNetns;
use monitor::{
    bpf::{
        KernelStateReader, Programs, kernel_state::read_namespace, task_file::TaskFileReader,
        walk::SlotWalker,
    },
    netns::Netns,
};

/// Passes per measurement (the median is reported).
const ROUNDS: usize = 15;
/// Descriptors a holder keeps for itself besides its sockets.
const SPARE_FDS: u64 = 64;
/// Socket table slots for the probes: room for every socket of the largest scenario, which the
/// slot walk reads through the table.
const CAPACITY: u32 = 262_144;

fn main() -> anyhow::Result<()> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--hold") {
        return hold(&args[1], args[2].parse()?);
    }
    let probe_reads = args.first().map(String::as_str) == Some("--probe-reads");
    if probe_reads {
        args.remove(0);
    }
    let fd_limit = raise_fd_limit()?;
    // The programs' own run time (restored to off at the end: it costs every program a clock
    // read per run).
    std::fs::write("/proc/sys/kernel/bpf_stats_enabled", "1").context("bpf_stats_enabled")?;
    let scenarios: Vec<(u64, usize)> = if args.is_empty() {
        vec![(10_000, 1), (10_000, 50), (100_000, 10)]
    } else {
        args.iter()
            .map(|a| parse_scenario(a))
            .collect::<anyhow::Result<_>>()?
    };
    let mut probes = if probe_reads {
        Programs::load_with_probe_reads(CAPACITY)
    } else {
        Programs::load(CAPACITY, false)
    }
    .context("load the probes")?;
    let holders = probes.holders_reader().context("load iter/task_file")?;
    let records = probes.records_reader().context("load iter/tcp")?;
    // Only where the programs read through `bpf_rdonly_cast` (not with --probe-reads).
    let walker = probes.slot_walker().ok();
    println!(
        "descriptors per holder process: {fd_limit}; {ROUNDS} passes each, medians; tcp_sock \
         fields read by {:?}",
        probes.tcp_sock_reads
    );
    for (sockets, namespaces) in scenarios {
        run(
            sockets,
            namespaces,
            fd_limit,
            &holders,
            &records,
            walker.as_ref(),
        )?;
    }
    std::fs::write("/proc/sys/kernel/bpf_stats_enabled", "0").context("bpf_stats_enabled")?;
    Ok(())
}

/// `SOCKETS:NAMESPACES`.
fn parse_scenario(arg: &str) -> anyhow::Result<(u64, usize)> {
    let (sockets, namespaces) = arg.split_once(':').context("SOCKETS:NAMESPACES")?;
    Ok((sockets.parse()?, namespaces.parse()?))
}

/// Raises the soft descriptor limit to the hard one (inherited by the holders); returns it.
fn raise_fd_limit() -> anyhow::Result<u64> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    Ok(hard)
}

/// One scenario: `sockets` spread evenly over `namespaces` new namespaces.
fn run(
    sockets: u64,
    namespaces: usize,
    fd_limit: u64,
    holders: &TaskFileReader,
    records: &KernelStateReader,
    walker: Option<&SlotWalker>,
) -> anyhow::Result<()> {
    let per_ns = sockets / namespaces as u64 / 2;
    let per_child = (fd_limit - SPARE_FDS) / 2;
    let mut created = Vec::new();
    let mut children = Vec::new();
    for i in 0..namespaces {
        let ns = TestNetns::create(format!("tl-hbench-{i}-{}", std::process::id()))?;
        let mut left = per_ns;
        while left > 0 {
            let n = left.min(per_child);
            children.push(spawn_holder(&ns, n)?);
            left -= n;
        }
        created.push(ns);
    }
    for child in &mut children {
        wait_ready(child)?;
    }
    let netns: Vec<Netns> = created
        .iter()
        .map(|ns| Netns {
            inode: u32::try_from(ns.inode()).expect("nsfs inodes are 32-bit"),
            path: ns.path(),
        })
        .collect();
    let inodes: Vec<u32> = netns.iter().map(|n| n.inode).collect();
    let mut seen = 0;
    let stats_before = program_stats();
    let (pass_time, pass_records) = median(|| {
        let mut all = 0usize;
        let mut ours = 0usize;
        holders
            .for_each(|r| {
                all += 1;
                ours += usize::from(inodes.contains(&r.netns));
            })
            .expect("task_file pass");
        seen = ours;
        all
    });
    let program = program_delta(&stats_before, &program_stats());
    let mut tcp_seen = 0;
    let (tcp_time, _) = median(|| {
        tcp_seen = netns
            .iter()
            .map(|ns| read_namespace(records, ns).expect("iter/tcp read").len())
            .sum();
        tcp_seen
    });
    println!(
        "{sockets} sockets in {namespaces} namespace(s): task_file pass {:.2} ms for {pass_records} \
         records on the host ({seen} of ours; {:.3} µs/record) | iter/tcp over the {namespaces} \
         namespace(s) {:.2} ms for {tcp_seen} sockets ({:.3} µs/socket)",
        ms(pass_time),
        micros_per(pass_time, pass_records),
        ms(tcp_time),
        micros_per(tcp_time, tcp_seen),
    );
    if let Some((runs, nanos)) = program {
        let rounds = ROUNDS as u64;
        println!(
            "    task_file program itself: {:.2} ms per pass, {} visits (open files) per pass, \
             {:.0} ns per visit",
            nanos as f64 / rounds as f64 / 1e6,
            runs / rounds,
            nanos as f64 / runs.max(1) as f64,
        );
    }
    if let Some(walker) = walker {
        let mut ours = 0;
        let (walk_time, records) = median(|| {
            let mut all = 0usize;
            ours = 0;
            walker
                .for_each(|r| {
                    all += 1;
                    ours += usize::from(r.state == 1);
                })
                .expect("slot walk");
            all
        });
        println!(
            "    slot walk (every tracked socket, no holders): {:.2} ms for {records} records \
             ({ours} established; {:.3} µs/record)",
            ms(walk_time),
            micros_per(walk_time, records),
        );
    }
    for mut child in children {
        drop(child.stdin.take()); // EOF: the holder exits
        child.wait()?;
    }
    Ok(())
}

/// `(run_cnt, run_time_ns)` of every BPF program this process holds a descriptor of, by
/// descriptor (`/proc/self/fdinfo`; counted while `kernel.bpf_stats_enabled` is 1).
fn program_stats() -> Vec<(String, u64, u64)> {
    let Ok(dir) = std::fs::read_dir("/proc/self/fdinfo") else {
        return Vec::new();
    };
    dir.filter_map(|entry| {
        let entry = entry.ok()?;
        let text = std::fs::read_to_string(entry.path()).ok()?;
        let field = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        Some((
            entry.file_name().to_string_lossy().into_owned(),
            field("run_cnt:")?,
            field("run_time_ns:")?,
        ))
    })
    .collect()
}

/// The program that ran most between `before` and `after` (the iterator; the hooks the probes
/// attached run only on TCP events): (runs, nanoseconds).
fn program_delta(
    before: &[(String, u64, u64)],
    after: &[(String, u64, u64)],
) -> Option<(u64, u64)> {
    after
        .iter()
        .filter_map(|(fd, runs, nanos)| {
            let (_, runs0, nanos0) = before.iter().find(|(f, _, _)| f == fd)?;
            Some((runs - runs0, nanos - nanos0))
        })
        .max_by_key(|&(runs, _)| runs)
}

/// Runs `f` [`ROUNDS`] times; the median duration and the last count `f` returned.
fn median(mut f: impl FnMut() -> usize) -> (Duration, usize) {
    let mut times = Vec::with_capacity(ROUNDS);
    let mut count = 0;
    for _ in 0..ROUNDS {
        let start = Instant::now();
        count = f();
        times.push(start.elapsed());
    }
    times.sort_unstable();
    (times[ROUNDS / 2], count)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn micros_per(d: Duration, n: usize) -> f64 {
    d.as_secs_f64() * 1e6 / n.max(1) as f64
}

/// This binary as a holder of `connections` loopback connections inside `ns`.
fn spawn_holder(ns: &TestNetns, connections: u64) -> anyhow::Result<Child> {
    let exe = std::env::current_exe()?;
    Command::new(exe)
        .args([
            "--hold",
            &ns.path().to_string_lossy(),
            &connections.to_string(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("start a holder")
}

/// Waits for a holder's "ready" line.
fn wait_ready(child: &mut Child) -> anyhow::Result<()> {
    let stdout = child.stdout.take().context("holder stdout")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    if line.trim() != "ready" {
        bail!("holder said {line:?}");
    }
    Ok(())
}

/// The holder: enters the namespace at `path`, makes `connections` loopback connections, keeps
/// both ends, says "ready" and waits for its stdin to close.
fn hold(path: &str, connections: u64) -> anyhow::Result<()> {
    let ns = File::open(path).with_context(|| format!("open {path}"))?;
    // SAFETY: setns(2) on a namespace file this process opened; the process is single-threaded.
    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        bail!("setns {path}: {}", std::io::Error::last_os_error());
    }
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let address = listener.local_addr()?;
    let mut held = Vec::new();
    for _ in 0..connections {
        // One at a time: the accept queue never fills.
        let client = TcpStream::connect(address)?;
        let (server, _) = listener.accept()?;
        held.push((client, server));
    }
    println!("ready");
    std::io::stdout().flush()?;
    let mut rest = Vec::new();
    std::io::stdin().read_to_end(&mut rest)?;
    Ok(())
}
