use monitor_common::sockopt::{OUTCOME_DONE, OUTCOME_NOT_SEEN, SockoptRequest, SockoptValues};

use super::*;
use crate::act::probe::recover::{Decision, decide};

/// What the application had: keepalive off, the kernel's defaults.
const APPLICATION: SockoptValues = SockoptValues {
    keepalive: 0,
    keepidle_s: 7200,
    keepintvl_s: 75,
    keepcnt: 9,
    user_timeout_ms: 0,
};

/// What a probe every 5 s of a socket silent 42 s sets.
const PROBE: SockoptValues = SockoptValues {
    keepalive: 1,
    keepidle_s: 42,
    keepintvl_s: 5,
    keepcnt: 127,
    user_timeout_ms: 0,
};

fn entry(cookie: u64) -> JournalEntry {
    JournalEntry {
        netns: 4_026_531_840,
        cookie,
        local: "10.0.0.1:40000".parse().unwrap(),
        remote: "[fd00::2]:6379".parse().unwrap(),
        original: APPLICATION,
        probe: PROBE,
    }
}

fn cookies(journal: &Journal) -> Vec<u64> {
    journal.entries().map(|e| e.cookie).collect()
}

#[test]
fn entries_are_added_replaced_and_removed_by_cookie() {
    let mut journal = Journal::empty(Path::new("/nonexistent"));
    assert!(journal.is_empty());
    journal.add(entry(2));
    journal.add(entry(1));
    journal.add(JournalEntry {
        netns: 7,
        ..entry(2)
    });
    assert_eq!(cookies(&journal), [1, 2]);
    assert_eq!(journal.get(2).map(|e| e.netns), Some(7), "replaced");
    assert!(journal.remove(1));
    assert!(!journal.remove(1), "already gone");
    assert_eq!(cookies(&journal), [2]);
}

#[test]
fn saved_journal_reads_back_and_leaves_no_temporary_file() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = dir.path().join("run/tcp-liveness");
    let mut journal = Journal::empty(&runtime);
    journal.add(entry(10));
    journal.add(entry(11));
    journal.save().expect("directory created, file written");
    let names: Vec<_> = fs::read_dir(&runtime)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, [JOURNAL_FILE]);
    let read = Journal::load(&runtime).expect("readable");
    assert_eq!(read.entries().collect::<Vec<_>>(), [&entry(10), &entry(11)]);
    journal.remove(10);
    journal.save().unwrap();
    assert_eq!(cookies(&Journal::load(&runtime).unwrap()), [11]);
}

#[test]
fn no_directory_is_an_empty_journal_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = dir.path().join("absent");
    assert!(Journal::load(&runtime).unwrap().is_empty());
    assert!(!runtime.exists(), "reading creates nothing");
}

#[test]
fn parse_errors_say_what_is_wrong() {
    let not_json = parse("{\"version\": 1, \"entries\": [").unwrap_err();
    assert!(not_json.contains("EOF"), "{not_json}");
    let wrong_shape = parse(r#"{"version": 1, "entries": [{"cookie": 5}]}"#).unwrap_err();
    assert!(wrong_shape.contains("missing field"), "{wrong_shape}");
    let other_version = parse(r#"{"version": 9, "entries": []}"#).unwrap_err();
    assert_eq!(other_version, "version 9 (this agent reads version 1)");
    assert_eq!(parse(r#"{"version": 1, "entries": []}"#), Ok(Vec::new()));
}

#[test]
fn a_corrupt_file_is_set_aside_and_the_journal_starts_empty() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join(JOURNAL_FILE), "not json").unwrap();
    let journal = Journal::load(dir.path()).expect("not fatal");
    assert!(journal.is_empty());
    assert!(!dir.path().join(JOURNAL_FILE).exists());
    let aside = fs::read_to_string(dir.path().join(SET_ASIDE_FILE)).unwrap();
    assert_eq!(aside, "not json", "kept for a look");
}

#[test]
fn an_unwritable_directory_is_an_error_naming_it() {
    let file = tempfile::NamedTempFile::new().unwrap();
    let below_a_file = file.path().join("tcp-liveness");
    let error = Journal::empty(&below_a_file).save().unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains(&below_a_file.display().to_string()),
        "{message}"
    );
    assert!(message.contains("cannot create"), "{message}");
    let mut written = Written::new(Journal::empty(&below_a_file));
    assert!(written.save(), "nothing changed: nothing to write");
    written.add(entry(1));
    assert!(!written.save());
    assert!(!written.save(), "still behind");
}

#[test]
fn the_start_read_replaces_the_journalled_original() {
    let dir = tempfile::tempdir().unwrap();
    let mut written = Written::new(Journal::empty(dir.path()));
    written.add(entry(1));
    let set_meanwhile = SockoptValues {
        keepcnt: 4,
        ..APPLICATION
    };
    written.original_was(
        1,
        &SockoptRequest {
            before: set_meanwhile,
            ..SockoptRequest::default()
        },
    );
    assert!(written.save());
    let read = Journal::load(dir.path()).unwrap();
    assert_eq!(read.get(1).map(|e| e.original), Some(set_meanwhile));
}

#[test]
fn only_sockets_still_carrying_the_probes_options_are_restored() {
    let read = |before: SockoptValues| SockoptRequest {
        outcome: OUTCOME_DONE,
        before,
        ..SockoptRequest::default()
    };
    let e = entry(1);
    assert_eq!(decide(&e, Some(&read(PROBE))), Decision::Restore);
    let idle_moved = SockoptValues {
        keepidle_s: 1,
        ..PROBE
    };
    assert_eq!(
        decide(&e, Some(&read(idle_moved))),
        Decision::Restore,
        "the idle time is not the probe's mark"
    );
    for changed in [
        SockoptValues {
            keepcnt: 5,
            ..PROBE
        },
        SockoptValues {
            keepintvl_s: 30,
            ..PROBE
        },
        SockoptValues {
            keepalive: 0,
            ..PROBE
        },
    ] {
        assert_eq!(
            decide(&e, Some(&read(changed))),
            Decision::Changed,
            "{changed:?}"
        );
    }
    let not_seen = SockoptRequest {
        outcome: OUTCOME_NOT_SEEN,
        ..SockoptRequest::default()
    };
    assert_eq!(decide(&e, Some(&not_seen)), Decision::Gone);
    assert_eq!(decide(&e, None), Decision::Gone);
    let restore = e.restore_request();
    assert_eq!(
        restore.want, APPLICATION,
        "exactly what the application had"
    );
    assert_eq!(
        restore,
        crate::act::probe::machine::restore_request(&read(APPLICATION)),
        "the probe thread's own restore"
    );
}
