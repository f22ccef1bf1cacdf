use std::{sync::Mutex, time::Duration};

use monitor_common::sockopt::{OUTCOME_NOT_SEEN, SET_USER_TIMEOUT};

use super::*;
use crate::verdict::Matcher;

/// (namespace, cookies) of each batch.
type Calls = Arc<Mutex<Vec<(Option<u32>, Vec<u64>)>>>;

/// Records each batch; answers DONE except for cookie 99 (gone); for cookie 42 a `fill` that
/// found the application's own values sets nothing.
#[derive(Default)]
struct Recorder(Calls);

impl Applier for Recorder {
    fn apply(
        &self,
        netns: Option<u32>,
        requests: &[(u64, SockoptRequest)],
    ) -> Result<Vec<(u64, SockoptRequest)>, String> {
        self.0
            .lock()
            .unwrap()
            .push((netns, requests.iter().map(|(c, _)| *c).collect()));
        Ok(requests
            .iter()
            .map(|&(cookie, r)| {
                let outcome = if cookie == 99 {
                    OUTCOME_NOT_SEEN
                } else {
                    OUTCOME_DONE
                };
                (
                    cookie,
                    SockoptRequest {
                        outcome,
                        applied: if cookie == 42 { 0 } else { r.set },
                        ..r
                    },
                )
            })
            .collect())
    }
}

struct Fixed(Vec<(u64, EnforcedSocket)>);

impl KernelProgram for Fixed {
    fn all(&self) -> Vec<(u64, EnforcedSocket)> {
        // Cookie 7 is enforced at establishment while the pass runs: not listed at its start.
        self.0.iter().copied().filter(|&(c, _)| c != 7).collect()
    }

    fn contains(&self, cookie: u64) -> bool {
        self.0.iter().any(|&(c, _)| c == cookie)
    }

    fn set_cgroup_id(&self, _slot: usize, _cgroup_id: u64) -> Result<(), String> {
        Err("no cgroup policies here".into())
    }
}

/// Follows no cgroup (the policies name none).
fn no_cgroups(policies: &[Enforce]) -> PolicyCgroups {
    PolicyCgroups::start(policies, Box::new(|_| unreachable!("no cgroup to look up")))
        .expect("nothing to look up")
}

fn policy(name: &str, matcher: Matcher) -> Enforce {
    Enforce {
        name: name.into(),
        matcher,
        keepalive: None,
        user_timeout: Some(Duration::from_secs(5)),
        mode: EnforceMode::Fill,
    }
}

fn connection(cookie: u64, port: u16, comm: Option<&str>, netns: u32) -> Connection {
    let addr = |p| std::net::SocketAddr::from(([10, 0, 0, 1], p));
    let mut c = Connection::new(cookie, tcp_state::ESTABLISHED, addr(port), addr(40_000));
    c.comm = comm.map(crate::model::Comm::new);
    c.netns = Some(netns);
    c
}

#[test]
fn each_socket_is_decided_once_by_its_first_matching_policy() {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let policies = vec![
        policy(
            "by-process",
            Matcher {
                process: Some("curl".into()),
                ..Matcher::default()
            },
        ),
        policy(
            "by-port",
            Matcher {
                local_port: Some(80),
                ..Matcher::default()
            },
        ),
    ];
    // Cookies 5 and 7 were enforced by the kernel program at establishment; 7 only after the
    // pass read its records.
    // Cookie 8's `fill` at establishment found the application's values and set nothing.
    let kernel = Fixed(vec![
        (7, EnforcedSocket::default()),
        (
            8,
            EnforcedSocket {
                slot: 1,
                ..EnforcedSocket::default()
            },
        ),
        (
            5,
            EnforcedSocket {
                slot: 1,
                applied: SET_USER_TIMEOUT,
                ..EnforcedSocket::default()
            },
        ),
    ]);
    let cgroups = no_cgroups(&policies);
    let e = Enforcement::new(
        policies,
        Box::new(kernel),
        cgroups,
        Box::new(Recorder(Arc::clone(&calls))),
    );

    let mut pass = e.start_pass();
    pass.observe(&connection(1, 80, Some("curl"), 7)); // by-process (first match)
    pass.observe(&connection(2, 80, Some("nginx"), 7)); // by-port
    pass.observe(&connection(3, 81, Some("nginx"), 8)); // no policy
    pass.observe(&connection(4, 80, None, 7)); // owner unknown: later
    pass.observe(&connection(5, 80, Some("nginx"), 7)); // the kernel did it
    pass.observe(&connection(7, 80, Some("nginx"), 7)); // the kernel did it, during the pass
    pass.observe(&connection(99, 80, Some("curl"), 8)); // gone meanwhile
    pass.observe(&connection(42, 80, Some("nginx"), 7)); // nothing to fill
    let mut closing = connection(6, 80, Some("curl"), 7);
    closing.state = tcp_state::CLOSE_WAIT;
    pass.observe(&closing); // only established connections
    assert_eq!(pass.finish(), 2);
    assert_eq!(
        *calls.lock().unwrap(),
        [(Some(7), vec![1, 2, 42]), (Some(8), vec![99])],
        "one batch per namespace"
    );
    let names = e.names();
    assert_eq!(
        names.get(&1).map(|n| &*e.policies[n.slot].name),
        Some("by-process")
    );
    assert_eq!(
        names.get(&2).map(|n| &*e.policies[n.slot].name),
        Some("by-port")
    );
    assert_eq!(
        names.get(&5).map(|n| &*e.policies[n.slot].name),
        Some("by-port"),
        "the kernel's record"
    );
    for not_enforced in [3, 99, 42, 8] {
        assert!(!names.contains_key(&not_enforced), "{not_enforced}");
    }

    // The next pass applies nothing again (an application's own setsockopt wins), but takes the
    // socket whose owner is now known.
    let mut pass = e.start_pass();
    for c in [1, 2, 3, 5, 99, 42] {
        pass.observe(&connection(c, 80, Some("x"), 7));
    }
    pass.observe(&connection(4, 80, Some("nginx"), 7));
    assert_eq!(pass.finish(), 1);
    assert_eq!(calls.lock().unwrap()[2], (Some(7), vec![4]));
    // A socket not seen in a pass is forgotten (cookies are never reused, memory is).
    let pass = e.start_pass();
    assert_eq!(pass.finish(), 0);
    assert!(crate::locks::lock(&e.state).decided.is_empty());
}

/// The kernel program of a cgroup policy: no records; remembers each slot update.
#[derive(Default)]
struct Slots(Arc<Mutex<Vec<(usize, u64)>>>);

impl KernelProgram for Slots {
    fn all(&self) -> Vec<(u64, EnforcedSocket)> {
        Vec::new()
    }

    fn contains(&self, _cookie: u64) -> bool {
        false
    }

    fn set_cgroup_id(&self, slot: usize, cgroup_id: u64) -> Result<(), String> {
        self.0.lock().unwrap().push((slot, cgroup_id));
        Ok(())
    }
}

#[test]
fn each_pass_gives_the_kernel_program_the_cgroups_new_id() {
    let updates = Arc::new(Mutex::new(Vec::new()));
    let existing = Arc::new(Mutex::new(None::<u64>));
    let lookup = {
        let existing = Arc::clone(&existing);
        Box::new(move |path: &str| {
            assert_eq!(path, "/svc");
            existing
                .lock()
                .unwrap()
                .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound))
        })
    };
    let policies = vec![
        policy(
            "by-port",
            Matcher {
                local_port: Some(80),
                ..Matcher::default()
            },
        ),
        policy(
            "svc",
            Matcher {
                cgroup: Some("/svc".into()),
                ..Matcher::default()
            },
        ),
    ];
    let cgroups = PolicyCgroups::start(&policies, lookup).expect("missing is no error");
    let e = Enforcement::new(
        policies,
        Box::new(Slots(Arc::clone(&updates))),
        cgroups,
        Box::new(Recorder::default()),
    );
    let pass = |id: Option<u64>| {
        *existing.lock().unwrap() = id;
        let _ = e.start_pass().finish();
    };
    pass(None);
    pass(Some(11));
    pass(Some(11));
    pass(Some(12));
    pass(None);
    pass(None);
    assert_eq!(
        *updates.lock().unwrap(),
        [(1, 11), (1, 12), (1, WAITING_CGROUP_ID)],
        "one update per change, for the cgroup policy's slot only"
    );
}
