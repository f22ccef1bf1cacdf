use super::*;

fn view(state: &str, suspect: &[&str]) -> ConnectionView {
    let mut view = crate::model::ConnectionView::from(&crate::model::Connection::new(
        7,
        monitor_common::tcp_state::ESTABLISHED,
        "10.0.0.1:7000".parse().unwrap(),
        "10.0.0.2:40000".parse().unwrap(),
    ));
    view.state = state.into();
    view.suspect = suspect.iter().map(|s| (*s).to_owned()).collect();
    view
}

#[test]
fn a_listening_socket_is_refused_even_with_force() {
    for force in [false, true] {
        let refused = refusal(&view("listen", &[]), force).expect("refused");
        assert!(refused.contains("is a listening socket"), "{refused}");
    }
}

#[test]
fn without_force_only_a_verdict_destroying_remedies() {
    let healthy = refusal(&view("established", &[]), false).expect("refused");
    assert!(healthy.contains("is not suspect"), "{healthy}");
    for leak in [&["close_wait_stuck"][..], &["idle_no_keepalive"]] {
        let refused = refusal(&view("established", leak), false).expect("refused");
        assert!(refused.contains("does not remedy"), "{leak:?}: {refused}");
        assert_eq!(refusal(&view("established", leak), true), None, "--force");
    }
    assert_eq!(refusal(&view("established", &["peer_dead"]), false), None);
    let both = view("close_wait", &["close_wait_stuck", "peer_unresponsive"]);
    assert_eq!(refusal(&both, false), None, "one remedied reason suffices");
}
