//! `[[remediate]]` sections (file only): which confirmed verdicts end their connection. Each
//! problem is one line naming the section and key; `close_wait_stuck` and `idle_no_keepalive`
//! are refused with the reason why destroying the socket would not help.

use std::time::Duration;

use super::{
    toml_table::{MATCHER_KEYS, check_keys, field, matcher},
    values::{self, Raw},
};
use crate::{
    act::remediate::policy::{REMEDIABLE, RemediatePolicy},
    model::Reason,
};

const KEYS: [&str; 5] = [
    "reason",
    "min_age",
    "dry_run",
    "max_per_minute",
    "min_retransmits",
];

/// Actions per minute when `max_per_minute` is not given (the example value).
const DEFAULT_MAX_PER_MINUTE: u32 = 10;

/// One `[[remediate]]` table; `number` is its 1-based position.
pub(super) fn entry(number: usize, table: &toml::Table) -> Result<RemediatePolicy, String> {
    check_keys(table, &[&MATCHER_KEYS[..], &KEYS[..]].concat())?;
    let reason = match table.get("reason") {
        None => return Err(format!("reason is required (one of {})", valid_reasons())),
        Some(value) => reason(Raw::Toml(value)).map_err(|p| format!("reason: {p}"))?,
    };
    let min_retransmits = field(table, "min_retransmits", min_retransmits)?;
    if min_retransmits.is_some() && reason != Reason::PeerUnresponsive {
        return Err(format!(
            "min_retransmits: only for reason = \"peer_unresponsive\" (this policy's reason is {})",
            reason.as_str()
        ));
    }
    Ok(RemediatePolicy {
        number,
        reason,
        matcher: matcher(table)?,
        min_age: field(table, "min_age", min_age)?.unwrap_or(DEFAULT_MIN_AGE),
        dry_run: field(table, "dry_run", values::boolean)?.unwrap_or(true),
        max_per_minute: field(table, "max_per_minute", max_per_minute)?
            .unwrap_or(DEFAULT_MAX_PER_MINUTE),
        min_retransmits: min_retransmits.unwrap_or(DEFAULT_MIN_RETRANSMITS),
    })
}

fn valid_reasons() -> String {
    REMEDIABLE.map(Reason::as_str).join(", ")
}

fn reason(raw: Raw<'_>) -> Result<Reason, String> {
    let Raw::Toml(toml::Value::String(name)) = raw else {
        return Err(format!("expected a reason name ({})", valid_reasons()));
    };
    match Reason::parse(name) {
        Some(r) if REMEDIABLE.contains(&r) => Ok(r),
        Some(Reason::CloseWaitStuck) => Err(
            "close_wait_stuck cannot be remediated: destroying the socket does not make the \
             application call close(), its descriptor leak stays (fix the application)"
                .into(),
        ),
        Some(Reason::IdleNoKeepalive) => Err(
            "idle_no_keepalive cannot be remediated: idle is not dead (prove it with [probe], \
             or give it keepalive with [[enforce]])"
                .into(),
        ),
        _ => Err(format!(
            "unknown reason {name:?} (one of {})",
            valid_reasons()
        )),
    }
}

/// A `[[remediate]]` policy's `min_age` when not given: longer than the outages a network
/// recovers from on its own (a link flap, a VRRP or load-balancer failover), so only a peer gone
/// for good is ended.
pub const DEFAULT_MIN_AGE: Duration = Duration::from_secs(30);

/// A `peer_unresponsive` policy's `min_retransmits` when not given: a live peer behind 30% loss
/// each way leaves 8 retransmissions in a row unanswered about once in 200 episodes, behind 10%
/// about once in 600,000 (docs/active-modes.md); a dead one reaches 8 after 51 s at the
/// kernel's minimum RTO.
pub const DEFAULT_MIN_RETRANSMITS: u8 = 8;

/// 1 to 30: more than the kernel ever sends (`tcp_retries2` at most 15 by default) would never
/// act, and the kernel then ends the connection itself.
fn min_retransmits(raw: Raw<'_>) -> Result<u8, String> {
    let n = values::count(raw, 30)?;
    if n == 0 {
        return Err("0 would act on no evidence: must be between 1 and 30".into());
    }
    Ok(u8::try_from(n).expect("range checked"))
}

/// 0 (act as soon as the verdict is confirmed) to 30 days.
fn min_age(raw: Raw<'_>) -> Result<Duration, String> {
    values::duration_between(
        raw,
        Duration::ZERO,
        Duration::from_hours(720),
        "0s and 30 days",
    )
}

fn max_per_minute(raw: Raw<'_>) -> Result<u32, String> {
    let n = values::count(raw, 10_000)?;
    if n == 0 {
        return Err(
            "0 would never act: must be between 1 and 10000 (dry_run = true only logs)".into(),
        );
    }
    Ok(u32::try_from(n).expect("range checked"))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::FileConfig;
    use super::*;

    fn parse(text: &str) -> Result<Vec<RemediatePolicy>, String> {
        FileConfig::parse(Path::new("t.toml"), text)
            .map(|f| f.remediate)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_are_dry_run_after_30s_ten_a_minute() {
        let p = parse("[[remediate]]\nreason = \"peer_dead\"\n").unwrap();
        assert_eq!(
            p,
            [RemediatePolicy {
                number: 1,
                reason: Reason::PeerDead,
                matcher: crate::verdict::Matcher::default(),
                min_age: DEFAULT_MIN_AGE,
                dry_run: true,
                max_per_minute: 10,
                min_retransmits: DEFAULT_MIN_RETRANSMITS,
            }]
        );
    }

    #[test]
    fn every_key_is_read() {
        let p = parse(
            "[[remediate]]\nreason = \"peer_dead\"\n\
             [[remediate]]\nreason = \"fin_wait2_stuck\"\nremote_port = 6379\nprocess = \"app\"\n\
             min_age = \"2m\"\ndry_run = false\nmax_per_minute = 3\n\
             [[remediate]]\nreason = \"peer_unresponsive\"\nmin_retransmits = 3\n",
        )
        .unwrap();
        assert_eq!(p[1].number, 2);
        assert_eq!(p[1].reason, Reason::FinWait2Stuck);
        assert_eq!(p[1].matcher.remote_port, Some(6379));
        assert_eq!(p[1].matcher.process.as_deref(), Some("app"));
        assert_eq!(p[1].min_age, Duration::from_mins(2));
        assert!(!p[1].dry_run);
        assert_eq!(p[1].max_per_minute, 3);
        assert_eq!(p[2].min_retransmits, 3);
    }

    #[test]
    fn bad_sections_are_one_line_naming_section_and_key() {
        let cases = [
            (
                "reason = \"close_wait_stuck\"",
                "[[remediate]] #1: reason: close_wait_stuck cannot be remediated: destroying the socket does not make the application call close()",
            ),
            (
                "reason = \"idle_no_keepalive\"",
                "reason: idle_no_keepalive cannot be remediated: idle is not dead",
            ),
            (
                "reason = \"dead\"",
                "reason: unknown reason \"dead\" (one of peer_dead, peer_unresponsive, keepalive_unanswered, fin_wait2_stuck)",
            ),
            ("min_age = \"2m\"", "reason is required (one of peer_dead"),
            (
                "reason = \"peer_dead\"\nmin_age = \"soon\"",
                "min_age: invalid duration \"soon\"",
            ),
            (
                "reason = \"peer_dead\"\nmin_age = \"-1s\"",
                "min_age: negative duration",
            ),
            (
                "reason = \"peer_dead\"\nmax_per_minute = 0",
                "max_per_minute: 0 would never act",
            ),
            (
                "reason = \"peer_unresponsive\"\nmin_retransmits = 0",
                "min_retransmits: 0 would act on no evidence",
            ),
            (
                "reason = \"peer_dead\"\nmin_retransmits = 3",
                "min_retransmits: only for reason = \"peer_unresponsive\"",
            ),
            (
                "reason = \"peer_dead\"\ndry_run = \"no\"",
                "dry_run: expected true or false",
            ),
            (
                "reason = \"peer_dead\"\nmode = \"x\"",
                "unknown key \"mode\"",
            ),
        ];
        for (body, expected) in cases {
            let error = parse(&format!("[[remediate]]\n{body}\n")).unwrap_err();
            assert!(error.contains(expected), "{body:?}: {error}");
            assert!(!error.contains('\n'), "one line: {error}");
        }
        let single = parse("[remediate]\nreason = \"peer_dead\"\n").unwrap_err();
        assert!(
            single.contains("expected [[remediate]] sections"),
            "{single}"
        );
    }
}
