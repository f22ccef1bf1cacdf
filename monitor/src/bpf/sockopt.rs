//! Applies socket option changes to other processes' sockets through the `iter_tcp_sockopt`
//! program (`monitor-ebpf/src/sockopt.rs`): [`SockoptControl::apply`] puts one
//! [`SockoptRequest`] per socket cookie into the `SOCKOPT_REQUESTS` map, walks the calling
//! thread's network namespace with the iterator (the program applies each request under the
//! socket's lock with `bpf_setsockopt`), and takes the outcomes back out of the map.
//!
//! Like [`KernelStateReader::read`], it acts on the namespace of the **calling thread**: to reach
//! another namespace, call it from a thread that entered it.

use std::sync::Mutex;

use aya::{
    Btf, Ebpf,
    maps::{HashMap, MapData},
};
use monitor_common::sockopt::{
    ITER_TCP_SOCKOPT_PROGRAM, SOCKOPT_REQUESTS_CAPACITY, SOCKOPT_REQUESTS_MAP, SockoptRequest,
};

use super::{BpfError, KernelStateReader, maps::take};

/// The loaded `iter_tcp_sockopt` program and its request map. `Send + Sync`: one namespace's
/// batch at a time (a mutex), from any thread.
#[derive(Debug)]
pub struct SockoptControl {
    iterator: KernelStateReader,
    requests: Mutex<HashMap<MapData, u64, SockoptRequest>>,
}

impl SockoptControl {
    /// Loads (verifies) and links the program and takes its map out of `ebpf`.
    ///
    /// # Errors
    /// As [`KernelStateReader::load`]; the map is missing or of the wrong type.
    pub(crate) fn load(ebpf: &mut Ebpf, btf: &Btf) -> Result<Self, BpfError> {
        let iterator = KernelStateReader::load(ebpf, btf, ITER_TCP_SOCKOPT_PROGRAM)?;
        let requests = take(ebpf, SOCKOPT_REQUESTS_MAP)?;
        Ok(Self {
            iterator,
            requests: Mutex::new(requests),
        })
    }

    /// Applies `requests` (socket cookie, what to set) to the sockets of the calling thread's
    /// network namespace and returns each one's outcome, in the same order: `outcome` is
    /// `OUTCOME_NOT_SEEN` for a socket the walk did not meet (closed meanwhile, or in another
    /// namespace), else `OUTCOME_DONE` with the options as they were (`before`, `explicit`), what
    /// was applied and the first error. At most `SOCKOPT_REQUESTS_CAPACITY` (4,096) requests per
    /// call; a cookie given twice counts once (the last request).
    ///
    /// # Errors
    /// Too many requests, a map update the kernel refuses (`BpfError::Map`), or the iterator
    /// cannot be created or read (`BpfError::KernelState`). The map is emptied of this call's
    /// requests in every case.
    pub fn apply(
        &self,
        requests: &[(u64, SockoptRequest)],
    ) -> Result<Vec<(u64, SockoptRequest)>, BpfError> {
        if requests.len() > SOCKOPT_REQUESTS_CAPACITY as usize {
            return Err(BpfError::KernelState {
                step: "socket option requests",
                source: std::io::Error::other(format!(
                    "{} requests in one batch, at most {SOCKOPT_REQUESTS_CAPACITY}",
                    requests.len()
                )),
            });
        }
        let mut map = self
            .requests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let result = Self::run(&self.iterator, &mut map, requests);
        for (cookie, _) in requests {
            // Already gone when the insert failed part-way: nothing to undo.
            let _ = map.remove(cookie);
        }
        result
    }

    fn run(
        iterator: &KernelStateReader,
        map: &mut HashMap<MapData, u64, SockoptRequest>,
        requests: &[(u64, SockoptRequest)],
    ) -> Result<Vec<(u64, SockoptRequest)>, BpfError> {
        let map_error = |source| BpfError::Map {
            name: SOCKOPT_REQUESTS_MAP,
            source,
        };
        for (cookie, request) in requests {
            let fresh = SockoptRequest {
                set: request.set,
                fill: request.fill,
                want: request.want,
                ..SockoptRequest::default()
            };
            map.insert(cookie, fresh, 0).map_err(map_error)?;
        }
        // The program writes no records: reading to the end only makes the kernel walk.
        iterator.for_each(|_| {})?;
        requests
            .iter()
            .map(|(cookie, _)| match map.get(cookie, 0) {
                Ok(outcome) => Ok((*cookie, outcome)),
                Err(aya::maps::MapError::KeyNotFound) => Ok((*cookie, SockoptRequest::default())),
                Err(source) => Err(map_error(source)),
            })
            .collect()
    }
}
