//! What the agent shows the outside world: Prometheus metrics, the `/connections` JSON, the
//! `/alerts` groups, and the HTTP server that serves them. Everything here reads the latest
//! published scan from a [`SnapshotStore`] or the live table through the scan's own pipeline;
//! nothing here touches the kernel maps directly.

pub(crate) mod health;
pub(crate) mod http;
pub mod json;
pub mod metrics;
mod store;

pub use store::{Published, SnapshotStore};
