//! Polling until something another process does shows up, or a deadline passes.

use std::{
    convert::Infallible,
    time::{Duration, Instant},
};

/// How often [`wait_for`] and [`wait_for_optional`] look.
pub const POLL_EVERY: Duration = Duration::from_millis(100);

/// Calls `check` every `every` until it returns `Ok(Some(value))` (→ `Ok(Some(value))`), or
/// `timeout` has passed (→ `Ok(None)`). `check` runs at least once, and once more at or after
/// the deadline.
///
/// # Errors
/// The first error `check` returns, which ends the wait.
pub fn poll<T, E>(
    timeout: Duration,
    every: Duration,
    mut check: impl FnMut() -> Result<Option<T>, E>,
) -> Result<Option<T>, E> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check()? {
            return Ok(Some(value));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        std::thread::sleep(every);
    }
}

/// Polls `check` every [`POLL_EVERY`] until it returns Some, or gives None after `timeout`.
pub fn wait_for_optional<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    match poll(timeout, POLL_EVERY, || Ok::<_, Infallible>(check())) {
        Ok(found) => found,
        Err(never) => match never {},
    }
}

/// Polls `check` every [`POLL_EVERY`] until it returns Some, and returns that value.
///
/// # Panics
/// After `timeout`, naming `what` was awaited.
pub fn wait_for<T>(what: &str, timeout: Duration, check: impl FnMut() -> Option<T>) -> T {
    wait_for_optional(timeout, check)
        .unwrap_or_else(|| panic!("timed out after {timeout:?} waiting for {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_the_first_value_or_none_at_the_deadline() {
        let mut calls = 0;
        let found = wait_for_optional(Duration::from_secs(5), || {
            calls += 1;
            (calls == 3).then_some(calls)
        });
        assert_eq!(found, Some(3));
        let never: Option<()> = wait_for_optional(Duration::ZERO, || None);
        assert_eq!(never, None);
    }

    #[test]
    fn an_error_ends_the_wait() {
        let result: Result<Option<()>, &str> =
            poll(Duration::from_secs(5), Duration::ZERO, || Err("gone"));
        assert_eq!(result, Err("gone"));
    }
}
