//! The vocabulary every other room speaks: a [`Connection`] and its parts, the [`Reason`]s a
//! connection can be suspect for, the label words and the owner grouping of bounded-cardinality
//! outputs, the wire form of a connection, how durations are written, and the catalogue of
//! metric families ([`metric_families`]: here so that every room that counts can name its
//! metric from it). Pure data and pure functions; imports nothing from the rest of the crate.

mod age;
mod comm;
mod connection;
pub(crate) mod format;
mod grouping;
pub(crate) mod labels;
pub mod metric_families;
mod pod;
mod ports;
mod probe;
mod reason;
mod remediation;
mod stack;
mod view;

pub use self::{
    age::verdict_age,
    comm::{Comm, TASK_COMM_LEN, kernel_buffer},
    connection::{Connection, ConntrackDrop, Holder, Holders, Keepalive},
    grouping::{GroupBy, Grouping, Owner, split_top_ports},
    pod::PodIdentity,
    ports::{LocalPort, ServicePorts},
    probe::{PeerVerdict, ProbeResult, ProbeView},
    reason::Reason,
    remediation::{RemediationAction, RemediationResult},
    stack::{CallStack, StackFrame, is_system_module},
    view::{ConnectionView, HolderView, KeepaliveView, container_id},
};
