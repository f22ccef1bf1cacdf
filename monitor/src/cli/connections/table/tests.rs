use super::*;
use crate::{
    cli::table::WIDTH,
    model::{HolderView, ProbeView},
};

/// A realistic IPv4 row: a service's connection, owned by a 7-digit pid with an ordinary name.
fn view(state: &str, remote: &str, idle: Option<f64>, suspect: &[&str]) -> ConnectionView {
    ConnectionView {
        cookie: 1_048_577,
        state: state.into(),
        local: "10.20.30.40:8443".into(),
        remote: remote.into(),
        netns: Some(4_026_531_840),
        pid: Some(1_234_567),
        comm: Some("postgres".into()),
        holders: None,
        state_age_seconds: Some(7900.0),
        idle_seconds: idle,
        since_send_seconds: idle,
        since_recv_seconds: None,
        since_peer_seconds: Some(0.05),
        bytes_sent: 0,
        bytes_received: 0,
        unacked_bytes: Some(1448),
        srtt_ms: None,
        send_queue_bytes: None,
        recv_queue_bytes: None,
        retransmits: 12,
        seeded: false,
        state_age_at_least_seconds: None,
        keepalive: None,
        user_timeout_seconds: None,
        orphan: false,
        accept_queue: false,
        cgroup: None,
        container: None,
        kubernetes: None,
        enforced: None,
        since_retrans_start_seconds: None,
        gives_up_in_seconds: None,
        suspect: suspect.iter().map(|s| (*s).to_owned()).collect(),
        why: suspect.iter().map(|s| format!("why {s}")).collect(),
        probe: None,
        stack: None,
    }
}

fn assert_fits(out: &str) {
    for line in out.lines() {
        assert!(
            line.chars().count() <= WIDTH,
            "{} > {WIDTH}: {line:?}",
            line.chars().count()
        );
    }
}

/// A probed connection shows the probe's result beside its reasons.
#[test]
fn probe_results_follow_the_reasons() {
    let mut alive = view("established", "10.0.0.2:6379", Some(90.0), &[]);
    alive.probe = Some(ProbeView {
        sent_at: "2026-12-01T03:00:00.000Z".into(),
        result: "peer_alive".into(),
        answered: true,
        rtt_ms: Some(4.0),
        unanswered: 0,
    });
    assert_eq!(verdict_cell(&alive), "- probe=peer_alive");
    let dead = ConnectionView {
        suspect: vec!["peer_dead".into()],
        probe: alive.probe.clone().map(|p| ProbeView {
            result: "peer_dead".into(),
            ..p
        }),
        ..alive
    };
    assert_eq!(verdict_cell(&dead), "peer_dead probe=peer_dead");
    let never = view("established", "10.0.0.2:6379", None, &[]);
    assert_eq!(verdict_cell(&never), "-");
}

#[test]
fn table_is_aligned_with_ages_named_as_ages() {
    let mut seeded = view("established", "10.0.0.2:80", None, &[]);
    seeded.state_age_seconds = None;
    seeded.state_age_at_least_seconds = Some(73.0);
    let views = [
        view(
            "close_wait",
            "[2001:db8::7]:51234",
            Some(245.0),
            &["close_wait_stuck"],
        ),
        seeded,
    ];
    let expected = "\
STATE        LOCAL             REMOTE               PID/COMM             AGE   IDLE  SUSPECT
close_wait   10.20.30.40:8443  [2001:db8::7]:51234  1234567/postgres   2h11m  4m05s  close_wait_stuck
established  10.20.30.40:8443  10.0.0.2:80          1234567/postgres  ≥1m13s      -  -
";
    assert_eq!(connections(&views, false), expected);
    let wide = connections(&views, true);
    let header = wide.lines().next().unwrap();
    assert!(
        header.contains("IDLE  SEND-AGO  RECV-AGO  PEER-AGO  UNACKED  RETRANS  NETNS"),
        "{header}"
    );
    assert!(
        wide.contains("    4m05s         -      50ms     1448       12  4026531840"),
        "{wide}"
    );
    assert_eq!(connections(&[], false).lines().count(), 1, "header only");
}

/// The widest IPv4 rows (15-character addresses, 5-digit ports, a 7-digit pid, a 15-character
/// name) still fit; `--wide` is allowed past it.
#[test]
fn ipv4_lines_fit_the_width() {
    let mut widest = view(
        "established",
        "192.168.100.200:51234",
        Some(3.0 * 86400.0),
        &["peer_unresponsive"],
    );
    widest.local = "192.168.100.201:54321".into();
    widest.comm = Some("ThreadPoolForeg".into());
    let mut seeded = view(
        "close_wait",
        "172.16.10.20:443",
        None,
        &["close_wait_stuck"],
    );
    seeded.comm = Some("redis-server".into());
    seeded.state_age_seconds = None;
    seeded.state_age_at_least_seconds = Some(5000.0);
    let views = [widest, seeded];
    assert_fits(&connections(&views, false));
    assert!(connections(&views, true).contains("COOKIE"));
}

/// The suspects view also shows the namespace and the cookie: ordinary IPv4 rows (private
/// addresses, 5-digit ports, a 6-digit pid, a 12-character name, the longest reason, a 10-digit
/// cookie and namespace) fit.
#[test]
fn ordinary_suspect_lines_fit_the_width() {
    let mut c = view(
        "established",
        "10.20.30.141:51234",
        None,
        &["keepalive_unanswered", "close_wait_stuck"],
    );
    c.local = "10.20.30.40:6379".into();
    c.pid = Some(123_456);
    c.comm = Some("redis-server".into());
    c.cookie = 4_294_967_296;
    c.state_age_seconds = None;
    c.state_age_at_least_seconds = Some(3.0 * 86400.0);
    c.why = vec![
        "keepalive on, nothing from the peer for 2h11m > first probe 2h00m + interval 1m15s; reset after 9 unanswered".into(),
        "CLOSE_WAIT ≥3d00h > close_wait_after 1m00s".into(),
    ];
    let out = suspects(&[c], false);
    assert_fits(&out);
    assert_eq!(out.lines().count(), 5, "{out}");
}

#[test]
fn suspects_by_reason_then_oldest_with_why_indented() {
    let mut young_leak = view("close_wait", "10.0.0.3:40001", None, &["close_wait_stuck"]);
    young_leak.state_age_seconds = Some(61.0);
    let mut old_leak = view("close_wait", "10.0.0.4:40002", None, &["close_wait_stuck"]);
    old_leak.state_age_seconds = None;
    old_leak.state_age_at_least_seconds = Some(600.0);
    let mut half_open = view(
        "established",
        "10.0.0.5:5432",
        None,
        &["peer_unresponsive", "idle_no_keepalive"],
    );
    half_open.gives_up_in_seconds = Some(780.0);
    let half_open_wide = half_open.clone();
    let out = suspects(&[half_open, young_leak, old_leak], false);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("REASON"), "{out}");
    assert!(
        lines[0].contains("COOKIE") && lines[0].contains("NETNS"),
        "{out}"
    );
    assert!(lines[0].ends_with("COOKIE"), "{out}");
    let order: Vec<&str> = lines
        .iter()
        .filter(|l| !l.starts_with(' '))
        .skip(1)
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(
        order,
        [
            "close_wait_stuck",
            "close_wait_stuck",
            "peer_unresponsive",
            "idle_no_keepalive"
        ]
    );
    assert!(
        lines[1].contains("≥10m00s") && lines[1].contains("10.0.0.4"),
        "{out}"
    );
    assert_eq!(lines[2], "  why close_wait_stuck");
    assert!(lines[3].contains("10.0.0.3"), "{out}");
    assert!(lines[5].ends_with("1048577"), "{out}");
    let wide = suspects(&[half_open_wide], true);
    assert!(
        wide.lines()
            .nth(1)
            .unwrap()
            .contains("  13m00s  established"),
        "{wide}"
    );
    assert_eq!(lines[6], "  why peer_unresponsive");
    assert_eq!(lines[8], "  why idle_no_keepalive");
    assert_eq!(suspects(&[], false).lines().count(), 1, "header only");
}

#[test]
fn wide_shows_holders_cgroup_and_enforcement() {
    let mut c = view("established", "10.0.0.2:80", None, &[]);
    c.holders = Some(vec![
        HolderView {
            pid: 10,
            comm: Some("nginx".into()),
        },
        HolderView {
            pid: 11,
            comm: None,
        },
    ]);
    c.container = Some("0123456789abcdef".repeat(4));
    c.enforced = Some("payments".into());
    let out = connections(&[c], true);
    assert!(out.contains("10/nginx,11/-"), "{out}");
    assert!(out.contains("payments  0123456789ab"), "{out}");
}

/// A process can name itself with terminal escapes (`prctl(PR_SET_NAME)`); the table shows
/// them as text, and a multi-byte name still lines up.
#[test]
fn control_characters_in_names_are_escaped() {
    let mut crafted = view("established", "10.0.0.2:80", None, &["close_wait_stuck"]);
    crafted.comm = Some("x\u{1b}[2J\rroot".into());
    crafted.why = vec!["a\u{1b}[2Jb".into()];
    for out in [
        connections(&[crafted.clone()], false),
        suspects(&[crafted], false),
    ] {
        assert!(!out.chars().any(|c| c.is_control() && c != '\n'), "{out:?}");
        assert!(out.contains("1234567/x\\x1b[2J\\x0droot"), "{out}");
    }
}

/// `--wide` names the pod as `namespace/pod` after the cgroup, `-` for a connection in none;
/// the default table is unchanged.
#[test]
fn wide_shows_the_pod() {
    let mut in_pod = view("established", "10.0.0.2:80", Some(1.0), &[]);
    in_pod.kubernetes = Some(crate::kubernetes::PodIdentity::new(
        Some("shop".into()),
        Some("web-7d9f".into()),
        Some("1b3c".into()),
        Some("nginx".into()),
    ));
    let outside = view(
        "established",
        "10.0.0.3:80",
        Some(1.0),
        &["idle_no_keepalive"],
    );
    let views = [in_pod.clone(), outside];
    let wide = connections(&views, true);
    let lines: Vec<&str> = wide.lines().collect();
    assert!(lines[0].ends_with("CGROUP  POD"), "{}", lines[0]);
    assert!(lines[1].ends_with("  shop/web-7d9f"), "{}", lines[1]);
    assert!(lines[2].ends_with("  -"), "{}", lines[2]);
    assert!(!connections(&views, false).contains("POD"));
    let mut suspect = in_pod;
    suspect.suspect = vec!["idle_no_keepalive".into()];
    suspect.why = vec!["why".into()];
    let wide = suspects(&[suspect], true);
    assert!(wide.lines().next().unwrap().ends_with("POD"), "{wide}");
    assert!(wide.contains("shop/web-7d9f"), "{wide}");
}
