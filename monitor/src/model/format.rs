//! How things are written, once: durations as seconds in JSON and logs, short human ages in the
//! CLI and alert summaries, counts with their noun, and errors with their causes on one line.

use std::{borrow::Cow, fmt::Write as _, time::Duration};

/// Seconds with millisecond resolution (finer digits are noise next to the scan interval);
/// None stays None (JSON `null`: unknown, never 0).
pub(crate) fn seconds(d: Option<Duration>) -> Option<f64> {
    // u64 milliseconds: 584 million years, and exact in f64 below 2^53 ms (285 000 years).
    d.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX) as f64 / 1000.0)
}

/// An age in the largest two units, the way `ps`/`kubectl` show them: `850ms`, `12s`, `4m05s`,
/// `2h11m`, `3d04h`; `-` when unknown.
pub(crate) fn human_age(seconds: Option<f64>) -> String {
    let Some(seconds) = seconds else {
        return "-".to_owned();
    };
    // Negative or NaN cannot come from the agent; clamp rather than print garbage.
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "positive and finite here; `as` saturates past u64::MAX ms (584 million years)"
    )]
    let ms = if seconds.is_finite() && seconds > 0.0 {
        (seconds * 1000.0).round() as u64
    } else {
        0
    };
    let s = ms / 1000;
    match s {
        0 => format!("{ms}ms"),
        1..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86400, s % 86400 / 3600),
    }
}

/// A [`Duration`] as [`human_age`] writes it (`1m17s`).
pub(crate) fn human_duration(d: Duration) -> String {
    human_age(seconds(Some(d)))
}

/// The time in a state: `exact` when the agent saw the transition, else the lower bound it has
/// for a socket that predates it, marked `≥` (`≥1m13s`); `-` when neither is known.
pub(crate) fn human_age_bound(exact: Option<f64>, at_least: Option<f64>) -> String {
    match (exact, at_least) {
        (None, Some(bound)) => format!("≥{}", human_age(Some(bound))),
        (exact, _) => human_age(exact),
    }
}

/// `n` and `noun`, plural unless `n` is 1: "1 namespace", "3 namespaces", "0 suspects". For nouns
/// whose plural adds an "s" (the agent's messages use no other).
pub(crate) fn counted(n: usize, noun: &str) -> String {
    format!("{n} {noun}{}", if n == 1 { "" } else { "s" })
}

/// `text` safe to print on a terminal: control characters (ESC, CR, BEL, DEL, the C1 range…),
/// which a process can put in its own name (`prctl(PR_SET_NAME)`) to rewrite or hide what the
/// operator sees, are written as `\x1b`-style escapes (`\u{9b}` past ASCII), and so are the
/// bidirectional overrides that reorder what follows; a backslash is doubled so an escape cannot
/// be faked. Borrowed when there is nothing to escape.
pub(crate) fn escape_control(text: &str) -> Cow<'_, str> {
    let unsafe_char = |c: char| c.is_control() || is_bidi_control(c) || c == '\\';
    if !text.chars().any(unsafe_char) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            c if c.is_ascii_control() => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c if c.is_control() || is_bidi_control(c) => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// The Unicode bidirectional marks, embeddings, overrides and isolates (not `is_control`).
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `error` and its chain of causes (`source()`), `: `-separated, the way `anyhow` prints `{:#}`:
/// one log line that says what failed and why.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_ages() {
        let cases = [
            (None, "-"),
            (Some(0.0), "0ms"),
            (Some(0.85), "850ms"),
            (Some(12.4), "12s"),
            (Some(245.0), "4m05s"),
            (Some(2.0 * 3600.0 + 11.0 * 60.0 + 59.0), "2h11m"),
            (Some(3.0 * 86400.0 + 4.0 * 3600.0 + 5.0), "3d04h"),
            (Some(-1.0), "0ms"),
        ];
        for (input, expected) in cases {
            assert_eq!(human_age(input), expected, "{input:?}");
        }
    }

    #[test]
    fn predating_sockets_show_their_lower_bound() {
        assert_eq!(human_age_bound(Some(5.0), Some(73.0)), "5s", "exact wins");
        assert_eq!(human_age_bound(None, Some(73.0)), "≥1m13s");
        assert_eq!(human_age_bound(None, None), "-");
        assert_eq!(human_duration(Duration::from_mins(1)), "1m00s");
    }

    #[test]
    fn error_chain_joins_the_causes() {
        #[derive(Debug, thiserror::Error)]
        #[error("POST /api/v2/alerts")]
        struct Post(#[source] std::io::Error);
        let post = Post(std::io::Error::other("connection refused"));
        assert_eq!(
            error_chain(&post),
            "POST /api/v2/alerts: connection refused"
        );
    }

    #[test]
    fn control_characters_are_escaped() {
        assert!(matches!(escape_control("redis-server"), Cow::Borrowed(_)));
        assert_eq!(escape_control("évil\u{1b}[2J\rok"), "évil\\x1b[2J\\x0dok");
        assert_eq!(escape_control("a\u{9b}b\u{7f}"), "a\\u{9b}b\\x7f");
        assert_eq!(
            escape_control("txt.\u{202e}exe"),
            "txt.\\u{202e}exe",
            "bidi override"
        );
        assert_eq!(
            escape_control("\\x1b"),
            "\\\\x1b",
            "a literal backslash is not an escape"
        );
        assert_eq!(
            escape_control("\u{fffd}"),
            "\u{fffd}",
            "the lossy replacement is printable"
        );
    }

    #[test]
    fn seconds_keep_milliseconds() {
        assert_eq!(seconds(Some(Duration::from_micros(1_234_567))), Some(1.234));
        assert_eq!(seconds(None), None);
    }

    #[test]
    fn counted_is_singular_for_one_only() {
        assert_eq!(counted(1, "namespace"), "1 namespace");
        assert_eq!(counted(0, "suspect"), "0 suspects");
        assert_eq!(counted(3, "more port"), "3 more ports");
    }
}
