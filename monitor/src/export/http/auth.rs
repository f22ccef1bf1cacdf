//! HTTP basic authentication against the web config's `basic_auth_users` (bcrypt hashes).
//!
//! bcrypt is slow on purpose (tens of ms per check at cost 10), so a flood of wrong passwords
//! could take the agent's CPU: checks run off the runtime threads, [`CONCURRENT_CHECKS`] at a
//! time, and a password that passed once is remembered, so a scraper costs one bcrypt per
//! agent start.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Mutex,
};

use axum::http::HeaderValue;
use base64::Engine as _;
use subtle::ConstantTimeEq as _;
use tokio::sync::Semaphore;

/// bcrypt checks that may run at once; more wait their turn.
pub(crate) const CONCURRENT_CHECKS: usize = 2;

/// A valid bcrypt hash of nothing anyone sends, cost 10 (a typical user's): checked for an
/// unknown user so that the answer takes as long as for a known one.
const UNKNOWN_USER_HASH: &str = "$2y$10$4TeExH2xL5Ob4Zuv1fD0TO5VfF7pP4v5HrXBaS9mhDBkTlyfs7/5a";

/// The users and their hashes, and the passwords already found right.
pub(crate) struct BasicAuth {
    users: BTreeMap<String, String>,
    /// user → the password that passed bcrypt (compared in constant time).
    verified: Mutex<HashMap<String, Vec<u8>>>,
    checks: Semaphore,
}

/// User names only: a remembered password must never reach a log line.
impl std::fmt::Debug for BasicAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BasicAuth")
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl BasicAuth {
    /// None when there are no users: authentication off.
    pub(crate) fn new(users: BTreeMap<String, String>) -> Option<Self> {
        (!users.is_empty()).then(|| Self {
            users,
            verified: Mutex::default(),
            checks: Semaphore::new(CONCURRENT_CHECKS),
        })
    }

    /// Whether the `Authorization` header names a user with the right password.
    pub(crate) async fn allows(&self, authorization: Option<&HeaderValue>) -> bool {
        let Some((user, password)) = authorization.and_then(credentials) else {
            return false;
        };
        if self.remembered(&user, &password) {
            return true;
        }
        let hash = self
            .users
            .get(&user)
            .map_or(UNKNOWN_USER_HASH, String::as_str)
            .to_owned();
        let known = self.users.contains_key(&user);
        let Ok(_turn) = self.checks.acquire().await else {
            return false;
        };
        let check = {
            let password = password.clone();
            tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash))
        };
        let passed = matches!(check.await, Ok(Ok(true))) && known;
        if passed {
            self.lock().insert(user, password);
        }
        passed
    }

    fn remembered(&self, user: &str, password: &[u8]) -> bool {
        self.lock()
            .get(user)
            .is_some_and(|known| bool::from(known.as_slice().ct_eq(password)))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<u8>>> {
        crate::locks::lock(&self.verified)
    }
}

/// `Basic base64(user:password)` → (user, password); None for anything else.
pub(crate) fn credentials(header: &HeaderValue) -> Option<(String, Vec<u8>)> {
    let value = header.to_str().ok()?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let colon = decoded.iter().position(|&b| b == b':')?;
    let user = String::from_utf8(decoded[..colon].to_vec()).ok()?;
    Some((user, decoded[colon + 1..].to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(user_password: &str) -> HeaderValue {
        let encoded = base64::engine::general_purpose::STANDARD.encode(user_password);
        HeaderValue::from_str(&format!("Basic {encoded}")).unwrap()
    }

    #[test]
    fn credentials_are_parsed_from_basic_only() {
        assert_eq!(
            credentials(&header("prom:s3:cret")),
            Some(("prom".into(), b"s3:cret".to_vec()))
        );
        assert_eq!(
            credentials(&HeaderValue::from_static("basic cHJvbTp4")),
            Some(("prom".into(), b"x".to_vec()))
        );
        assert_eq!(credentials(&HeaderValue::from_static("Bearer abc")), None);
        assert_eq!(credentials(&HeaderValue::from_static("Basic !!!")), None);
        assert_eq!(credentials(&header("no-colon")), None);
    }

    #[test]
    fn the_unknown_user_hash_is_valid() {
        let parts: bcrypt::HashParts = UNKNOWN_USER_HASH.parse().unwrap();
        assert_eq!(parts.get_cost(), 10);
    }

    #[tokio::test]
    async fn only_the_right_password_passes_and_is_remembered() {
        let hash = bcrypt::hash("right", 4).unwrap();
        let auth = BasicAuth::new([("prom".to_owned(), hash)].into()).unwrap();
        assert!(!auth.allows(None).await);
        assert!(!auth.allows(Some(&header("prom:wrong"))).await);
        assert!(!auth.allows(Some(&header("other:right"))).await);
        assert!(!auth.remembered("prom", b"right"));
        assert!(auth.allows(Some(&header("prom:right"))).await);
        assert!(auth.remembered("prom", b"right"));
        assert!(!auth.remembered("prom", b"righ"));
        assert!(!auth.allows(Some(&header("prom:righ"))).await);
        assert!(BasicAuth::new(BTreeMap::new()).is_none());
        let debug = format!("{auth:?}");
        assert!(
            debug.contains("prom") && !debug.contains("right"),
            "{debug}"
        );
    }
}
