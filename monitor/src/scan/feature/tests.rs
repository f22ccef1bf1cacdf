use std::sync::{Arc, Mutex};

use monitor_common::SockActivity;

use super::*;
use crate::{
    bpf::FixedStatus,
    model::Grouping,
    scan::{Pipeline, Scanner, convert::SocketDefaults, tests::established},
};

/// Writes down every hook call, in order.
#[derive(Default)]
struct Recorder(Mutex<Vec<String>>);

impl Recorder {
    fn note(&self, event: String) {
        self.0.lock().unwrap().push(event);
    }

    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

impl Feature for Recorder {
    fn start_scan(&self) -> Option<Box<dyn ScanPass + '_>> {
        self.note("start_scan".into());
        Some(Box::new(RecorderPass(self)))
    }

    fn annotator(&self) -> Option<Box<dyn Annotator + '_>> {
        self.note("annotator".into());
        Some(Box::new(RecorderPass(self)))
    }

    fn summarize(&self, summary: &mut Summary) {
        summary.enforced.entry("recorded".into()).or_default();
    }
}

struct RecorderPass<'a>(&'a Recorder);

impl Annotator for RecorderPass<'_> {
    fn annotate(&self, c: &mut Connection, _now_ns: u64, _policy: &Policy) {
        c.enforced = Some("annotated".into());
        self.0.note(format!("annotate {}", c.cookie));
    }
}

impl ScanPass for RecorderPass<'_> {
    fn observe(&mut self, c: &Connection, _policy: &Policy) {
        assert_eq!(c.enforced.as_deref(), Some("annotated"), "annotated first");
        self.0.note(format!("observe {}", c.cookie));
    }

    fn finish(self: Box<Self>) {
        self.0.note("finish".into());
    }
}

/// A scan starts the feature's scan before its pass, annotates then observes each live
/// connection, finishes once, and lets the feature add to the summary; a `/connections` read
/// only annotates.
#[test]
fn a_registered_feature_sees_every_pass() {
    let recorder = Arc::new(Recorder::default());
    let pipeline = Pipeline::without_proc(SocketDefaults::default(), Policy::default())
        .with_feature(Arc::clone(&recorder) as _);
    let table: Arc<Vec<(u64, SockActivity)>> =
        Arc::new(vec![(1, established(80)), (2, established(81))]);
    let scanner = Scanner::new(
        Arc::clone(&table) as _,
        Arc::new(FixedStatus::default()),
        Arc::new(pipeline),
        Grouping::default(),
    );
    let snapshot = scanner.scan(crate::scan::Cookies::default());
    assert_eq!(
        recorder.take(),
        [
            "start_scan",
            "annotator",
            "annotate 1",
            "observe 1",
            "annotate 2",
            "observe 2",
            "finish"
        ]
    );
    assert!(snapshot.summary.enforced.contains_key("recorded"));
    let mut read = Vec::new();
    scanner
        .pipeline()
        .read(table.as_ref(), 2, &mut |c| read.push(c.clone()));
    assert_eq!(recorder.take(), ["annotator", "annotate 1", "annotate 2"]);
    assert!(
        read.iter()
            .all(|c| c.enforced.as_deref() == Some("annotated"))
    );
}
