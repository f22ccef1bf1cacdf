//! Empty library target. The agent declares this crate as a build-dependency so that cargo
//! rebuilds the agent when this crate's dependencies (`monitor-common`, aya-ebpf) change; changes
//! to the programs themselves (the `tcp-liveness` binary) are caught by aya-build's
//! `rerun-if-changed` on this directory.
#![no_std]
