//! The call paths that opened a group's connections (`[forensics] stacks`), counted: what
//! `/alerts` and the Alertmanager annotation `call_paths` show per leak group ("297 opened at
//! `open_report_connection (report.c:41) ← handle_request ← main`).

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
};

use serde::{Deserialize, Serialize};

use crate::model::CallStack;

/// Paths kept per group, most connections first.
const MAX_PATHS: usize = 3;

/// One call path and how many of the group's connections it opened.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpeningPath {
    pub count: usize,
    /// The stack's one-line summary (`CallStack`'s display: the application's frames,
    /// innermost first).
    pub path: String,
}

/// Counts per stack while a group is gathered (connections of one process opened from one
/// stack share its `Arc`, so counting is by pointer; summaries are made once per stack).
#[derive(Default)]
pub(super) struct PathCounts<'a>(HashMap<*const CallStack, (&'a CallStack, usize)>);

impl<'a> PathCounts<'a> {
    pub(super) fn add(&mut self, stack: Option<&'a Arc<CallStack>>) {
        if let Some(stack) = stack {
            self.0.entry(Arc::as_ptr(stack)).or_insert((stack, 0)).1 += 1;
        }
    }

    pub(super) fn merge(&mut self, other: Self) {
        for (key, (stack, n)) in other.0 {
            self.0.entry(key).or_insert((stack, 0)).1 += n;
        }
    }

    /// The most common paths (by summary: the same path in two processes is one), at most
    /// [`MAX_PATHS`], most connections first, ties by path.
    pub(super) fn top(&self) -> Vec<OpeningPath> {
        let mut by_path: BTreeMap<String, usize> = BTreeMap::new();
        for (stack, n) in self.0.values() {
            *by_path.entry(stack.to_string()).or_default() += n;
        }
        let mut paths: Vec<OpeningPath> = by_path
            .into_iter()
            .map(|(path, count)| OpeningPath { count, path })
            .collect();
        paths.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.path.cmp(&b.path)));
        paths.truncate(MAX_PATHS);
        paths
    }
}

/// The `call_paths` annotation: "297 opened at …; 3 opened at …"; None without paths.
#[must_use]
pub(crate) fn annotation(paths: &[OpeningPath]) -> Option<String> {
    if paths.is_empty() {
        return None;
    }
    let each: Vec<String> = paths
        .iter()
        .map(|p| format!("{} opened at {}", p.count, p.path))
        .collect();
    Some(each.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::StackFrame;

    fn stack(function: &str) -> Arc<CallStack> {
        Arc::new(CallStack {
            frames: vec![StackFrame {
                function: Some(function.into()),
                ..StackFrame::default()
            }],
        })
    }

    /// Same path in two processes (two `Arc`s) is one; most common first; at most three;
    /// connections without a stack are not counted.
    #[test]
    fn the_most_common_paths_are_counted_by_summary() {
        let (a, a_elsewhere, b) = (stack("open_report"), stack("open_report"), stack("serve"));
        let (c, d) = (stack("c"), stack("d"));
        let mut counts = PathCounts::default();
        for s in [&a, &a, &b, &a_elsewhere, &c, &d, &d] {
            counts.add(Some(s));
        }
        counts.add(None);
        let mut other = PathCounts::default();
        other.add(Some(&b));
        counts.merge(other);
        let top = counts.top();
        let shown: Vec<(usize, &str)> = top.iter().map(|p| (p.count, p.path.as_str())).collect();
        assert_eq!(shown, [(3, "open_report"), (2, "d"), (2, "serve")]);
        assert_eq!(
            annotation(&top[..2]).as_deref(),
            Some("3 opened at open_report; 2 opened at d")
        );
        assert_eq!(annotation(&[]), None);
    }
}
