use std::net::SocketAddr;

use monitor_common::tcp_state;

use super::*;

const NOW: u64 = 1_000 * 1_000_000_000;

fn connection(idle_secs: u64) -> Connection {
    let local: SocketAddr = "10.0.0.1:5000".parse().expect("address");
    let remote: SocketAddr = "10.9.0.2:80".parse().expect("address");
    Connection {
        idle: Some(Duration::from_secs(idle_secs)),
        ..Connection::new(7, tcp_state::ESTABLISHED, local, remote)
    }
}

fn answers(last_activity_ns: u64) -> WriteAnswers {
    let found = ConntrackDrop {
        timeout: Duration::from_secs(100),
        drops_at_idle: Duration::from_secs(99),
    };
    let asked = Asked {
        last_activity_ns,
        found: Some(found),
    };
    WriteAnswers(Arc::new(Answers::from_iter([(7, asked)])))
}

#[test]
fn an_answer_holds_while_the_connection_stays_idle() {
    let policy = Policy::default();
    let write = answers(NOW - 80 * 1_000_000_000);
    let mut c = connection(80);
    write.annotate(&mut c, NOW, &policy);
    assert!(c.conntrack.is_some(), "the same idle stretch");
    let mut later = connection(90);
    write.annotate(&mut later, NOW + 10 * 1_000_000_000, &policy);
    assert!(later.conntrack.is_some(), "ten seconds on, still idle");
    let mut woke = connection(2);
    write.annotate(&mut woke, NOW + 10 * 1_000_000_000, &policy);
    assert!(woke.conntrack.is_none(), "traffic: the entry was refreshed");
    let mut other = Connection {
        cookie: 8,
        ..connection(80)
    };
    write.annotate(&mut other, NOW, &policy);
    assert!(other.conntrack.is_none(), "another socket");
}

#[test]
fn the_path_series_exists_from_the_first_scan() {
    let mut summary = Summary::default();
    HostConntrack::new().summarize(&mut summary);
    assert_eq!(summary.path_at_risk.get(CONNTRACK_PATH), Some(&0));
}
