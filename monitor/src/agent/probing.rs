//! Starting `[probe]`: the socket-option program is loaded only when some connection may be
//! probed (`[probe].enabled`, or an `[[override]]` with `probe = true`), and its thread started
//! after the capability drop.

use std::sync::Arc;

use crate::{
    act::probe::{ProbeBook, ProbeThread},
    bpf::{Programs, SockoptControl},
    config::RunConfig,
    error::Error,
    export::metrics::Metrics,
};

/// Whether any connection may be probed: enabled for all, or opted in by an override.
fn wanted(config: &RunConfig) -> bool {
    config.probe.enabled
        || config
            .policy
            .overrides
            .iter()
            .any(|o| o.probe == Some(true))
}

/// Loads the `iter_tcp_sockopt` program when probing is wanted (needs `CAP_BPF`: call before
/// the drop).
///
/// # Errors
/// The kernel refused the program ([`Error::Bpf`]): a feature asked for that cannot work
/// stops the agent rather than run without it.
pub(super) fn load_control(
    config: &RunConfig,
    programs: &mut Programs,
) -> Result<Option<Arc<SockoptControl>>, Error> {
    if !wanted(config) {
        return Ok(None);
    }
    let control = programs.sockopt_control()?;
    tracing::info!(
        enabled = config.probe.enabled,
        interval_s = config.probe.interval.as_secs(),
        count = config.probe.count,
        max_per_second = config.probe.max_per_second,
        max_per_scan = config.probe.max_per_scan,
        "keepalive probes on: quiet connections without keepalive get keepalive probes, their \
         options put back afterwards"
    );
    Ok(Some(control))
}

/// The probe state the scans and the probe thread share, when the socket-option program was
/// loaded (`loaded`); `hz` (`CONFIG_HZ`) converts the kernel's jiffies.
pub(super) fn book(config: &RunConfig, hz: Option<u32>, loaded: bool) -> Option<Arc<ProbeBook>> {
    loaded.then(|| Arc::new(ProbeBook::new(config.probe, hz)))
}

/// `tcp_liveness_probes_total`, when probing.
pub(super) fn register_metrics(book: Option<&ProbeBook>, metrics: &Metrics) {
    if let Some(book) = book {
        metrics
            .registry()
            .register(Box::new(book.probes_total().clone()))
            .expect("probe counters register once");
    }
}

/// Starts the probe thread when the program was loaded.
///
/// # Errors
/// The thread could not be started.
pub(super) fn start(
    book: Option<&Arc<ProbeBook>>,
    control: Option<Arc<SockoptControl>>,
) -> Result<Option<ProbeThread>, Error> {
    let (Some(book), Some(control)) = (book, control) else {
        return Ok(None);
    };
    ProbeThread::start(Arc::clone(book), control)
        .map(Some)
        .map_err(|source| Error::Thread {
            name: "probe",
            source,
        })
}
