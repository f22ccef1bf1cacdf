//! What the agent shows the outside world: Prometheus metrics, the `/connections` JSON and the
//! HTTP server that serves both. Everything here reads the latest [`Snapshot`](crate::table::Snapshot)
//! from a [`SnapshotStore`]; nothing here touches the kernel.

pub mod alerts;
pub mod http;
pub mod json;
pub mod metrics;
mod store;

pub use store::SnapshotStore;
