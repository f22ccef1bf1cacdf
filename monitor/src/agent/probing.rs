//! Starting `[probe]`: the socket-option program is loaded only when some connection may be
//! probed (`[probe].enabled`, or an `[[override]]` with `probe = true`) or a previous agent's
//! probe journal has sockets to put back, and its thread started after the capability drop.

use std::sync::Arc;

use crate::{
    act::probe::{Journal, JournalError, ProbeBook, ProbeThread, restore_journalled},
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

/// What the probe thread starts with: the loaded program and the journal it writes.
pub(super) struct ProbeControl {
    control: Arc<SockoptControl>,
    journal: Journal,
}

/// Settles the probe journal a previous agent left in `runtime_dir`, probing or not (its sockets
/// get their application's options back), and loads the `iter_tcp_sockopt` program when
/// probing is wanted or the journal has sockets to settle (needs `CAP_BPF` and, to enter the
/// namespaces, `CAP_SYS_ADMIN`: call before the drop, on a thread that may block).
///
/// Fail safe: probing needs a journal it can write; when `runtime_dir` cannot be created or
/// written, one warning says so and probing stays off (monitoring goes on).
///
/// # Errors
/// The kernel refused the program when probing is wanted ([`Error::Bpf`]): a feature asked
/// for that cannot work stops the agent rather than run without it.
pub(super) fn load_control(
    config: &RunConfig,
    programs: &mut Programs,
) -> Result<Option<ProbeControl>, Error> {
    let wanted = wanted(config);
    let journal = Journal::load(&config.runtime_dir);
    let leftovers = journal.as_ref().is_ok_and(|j| !j.is_empty());
    if !wanted && !leftovers {
        if let Err(error) = &journal {
            warn_journal(
                error,
                "cannot read the probe journal left by a previous agent",
            );
        }
        return Ok(None);
    }
    let control = match programs.sockopt_control() {
        Ok(control) => control,
        Err(error) if !wanted => {
            tracing::warn!(
                error = %crate::model::format::error_chain(&error),
                "cannot load the socket-option program: the sockets in the probe journal keep \
                 the probe's keepalive options"
            );
            return Ok(None);
        }
        Err(error) => return Err(error.into()),
    };
    let journal = journal.and_then(|mut journal| {
        restore_journalled(&control, &mut journal);
        // Settled, and for probing, the directory proven writable: empty, or what failed.
        journal.save().map(|()| journal)
    });
    if !wanted {
        if let Err(error) = &journal {
            warn_journal(
                error,
                "cannot write the settled probe journal (read again at the next start)",
            );
        }
        return Ok(None);
    }
    let journal = match journal {
        Ok(journal) => journal,
        Err(error) => {
            warn_journal(
                &error,
                "keepalive probes stay off: the probe journal cannot be written (runtime_dir)",
            );
            return Ok(None);
        }
    };
    tracing::info!(
        enabled = config.probe.enabled,
        interval_s = config.probe.interval.as_secs(),
        count = config.probe.count,
        max_per_second = config.probe.max_per_second,
        max_per_scan = config.probe.max_per_scan,
        journal = %journal.path().display(),
        "keepalive probes on: quiet connections without keepalive get keepalive probes, their \
         options put back afterwards"
    );
    Ok(Some(ProbeControl { control, journal }))
}

fn warn_journal(error: &JournalError, what: &str) {
    tracing::warn!(error = %crate::model::format::error_chain(error), "{what}");
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
    control: Option<ProbeControl>,
) -> Result<Option<ProbeThread>, Error> {
    let (Some(book), Some(ProbeControl { control, journal })) = (book, control) else {
        return Ok(None);
    };
    ProbeThread::start(Arc::clone(book), control, journal)
        .map(Some)
        .map_err(|source| Error::Thread {
            name: "probe",
            source,
        })
}
