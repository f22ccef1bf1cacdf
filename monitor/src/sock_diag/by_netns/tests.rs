use std::time::{Duration, Instant};

use super::ByNetns;

fn open_as(name: &str) -> impl FnOnce() -> Result<String, ()> + '_ {
    move || Ok(name.to_owned())
}

#[test]
fn a_namespace_is_opened_once_and_reused() {
    let mut kept = ByNetns::default();
    let t0 = Instant::now();
    assert_eq!(
        kept.get_or_open(7, t0, open_as("first")),
        Ok(&"first".to_owned())
    );
    // A second use finds the open one: `open` is not called.
    let reused = kept.get_or_open(7, t0, || -> Result<String, ()> { panic!("reopened") });
    assert_eq!(reused, Ok(&"first".to_owned()));
    assert_eq!(kept.len(), 1);
}

#[test]
fn only_sockets_unused_since_the_cutoff_are_closed() {
    let mut kept = ByNetns::default();
    let t0 = Instant::now();
    let later = t0 + Duration::from_secs(5);
    kept.get_or_open(1, t0, open_as("pod a")).unwrap();
    kept.get_or_open(2, t0, open_as("pod b")).unwrap();
    // Namespace 1 is used again later; 2 is not.
    kept.get_or_open(1, later, open_as("unused")).unwrap();
    assert_eq!(kept.close_unused_since(later), 1);
    assert_eq!(kept.len(), 1);
    // What stayed is namespace 1's socket; 2's is opened anew when needed.
    let reopened = kept.get_or_open(2, later, open_as("pod b again")).unwrap();
    assert_eq!(reopened, "pod b again");
    assert_eq!(kept.close_unused_since(later), 0);
}

#[test]
fn a_failed_open_keeps_nothing_and_forget_drops_one() {
    let mut kept: ByNetns<String> = ByNetns::default();
    let t0 = Instant::now();
    assert_eq!(kept.get_or_open(3, t0, || Err("gone")), Err("gone"));
    assert_eq!(kept.len(), 0);
    kept.get_or_open(3, t0, open_as("x")).unwrap();
    kept.forget(3);
    assert_eq!(kept.len(), 0);
}
