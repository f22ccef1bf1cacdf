//! `check --stack`: the call paths that opened the suspect connections (`[forensics] stacks`),
//! most common first, each with its count, owners and reasons, then its frames.

use std::{collections::BTreeSet, fmt::Write as _};

use crate::model::{
    CallStack, ConnectionView,
    format::{counted, escape_control},
};

/// The section `check --stack` prints after the groups: one entry per distinct call stack of
/// `suspects`, most connections first (ties in stack order), and a line for the suspects
/// without one. Empty when there are no suspects.
pub(super) fn section(suspects: &[ConnectionView]) -> String {
    if suspects.is_empty() {
        return String::new();
    }
    let mut paths: Vec<(&CallStack, Vec<&ConnectionView>)> = Vec::new();
    let mut without = 0;
    for c in suspects {
        let Some(stack) = &c.stack else {
            without += 1;
            continue;
        };
        match paths.iter_mut().find(|(s, _)| *s == stack) {
            Some((_, list)) => list.push(c),
            None => paths.push((stack, vec![c])),
        }
    }
    paths.sort_by(|a, b| {
        let key = |stack: &CallStack| stack.frames.iter().map(|f| f.address).collect::<Vec<_>>();
        b.1.len()
            .cmp(&a.1.len())
            .then_with(|| key(a.0).cmp(&key(b.0)))
    });
    let mut out = String::from("opening call paths of suspect connections:\n");
    for (stack, connections) in &paths {
        let owners: BTreeSet<String> = connections
            .iter()
            .map(|c| match (&c.comm, c.pid) {
                (Some(comm), Some(pid)) => format!("{} ({pid})", escape_control(comm)),
                (None, Some(pid)) => pid.to_string(),
                _ => "?".to_owned(),
            })
            .collect();
        let reasons: BTreeSet<&str> = connections
            .iter()
            .flat_map(|c| c.suspect.iter().map(String::as_str))
            .collect();
        let _ = write!(
            out,
            "  {} opened at {}\n    by {}; {}\n",
            counted(connections.len(), "connection"),
            escape_control(&stack.to_string()),
            owners.into_iter().collect::<Vec<_>>().join(", "),
            reasons.into_iter().collect::<Vec<_>>().join(", "),
        );
        for (i, frame) in stack.frames.iter().enumerate() {
            let module = frame.module.as_deref().unwrap_or("?");
            let _ = writeln!(
                out,
                "    #{i:<2} {:#018x} {}  {}",
                frame.address,
                escape_control(&frame.short()),
                escape_control(module)
            );
        }
    }
    if without > 0 {
        let _ = writeln!(
            out,
            "  {} without a recorded stack (opened before the agent started, or run without --stacks)",
            counted(without, "suspect connection")
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Connection, StackFrame};

    fn suspect(pid: u32, stack: Option<&CallStack>) -> ConnectionView {
        let addr = "127.0.0.1:7000".parse().unwrap();
        let mut c = Connection::new(u64::from(pid), 8, addr, addr);
        c.pid = Some(pid);
        c.stack = stack.cloned().map(std::sync::Arc::new);
        let mut view = ConnectionView::from(&c);
        view.suspect = vec!["close_wait_stuck".into()];
        view
    }

    fn frame(function: &str, line: Option<u32>, address: u64) -> StackFrame {
        StackFrame {
            function: Some(function.into()),
            file: line.map(|_| "/src/report.c".into()),
            line,
            module: Some("/app/leaky".into()),
            address,
        }
    }

    /// The most common path first, with its count, then its frames; suspects without a stack
    /// are counted on their own line.
    #[test]
    fn paths_are_counted_most_common_first() {
        let report = CallStack {
            frames: vec![
                frame("open_report_connection", Some(41), 0x10),
                frame("main", None, 0x20),
            ],
        };
        let serve = CallStack {
            frames: vec![frame("serve_leaky_client", Some(75), 0x30)],
        };
        let suspects = [
            suspect(812, Some(&serve)),
            suspect(812, Some(&report)),
            suspect(812, Some(&report)),
            suspect(900, None),
        ];
        let text = section(&suspects);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[1],
            "  2 connections opened at open_report_connection (report.c:41) ← main"
        );
        assert_eq!(lines[2], "    by 812; close_wait_stuck");
        assert_eq!(
            lines[3],
            "    #0  0x0000000000000010 open_report_connection (report.c:41)  /app/leaky"
        );
        assert!(text.contains("  1 connection opened at serve_leaky_client (report.c:75)\n"));
        assert!(text.ends_with("  1 suspect connection without a recorded stack (opened before the agent started, or run without --stacks)\n"));
        assert_eq!(section(&[]), "");
    }
}
