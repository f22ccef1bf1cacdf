//! The probe journal: a write-ahead record of the sockets that carry (or are about to carry) a
//! probe's keepalive options, so that an agent killed mid-probe (SIGKILL, the OOM killer) does
//! not leave them on the application's sockets for their lifetime. The probe thread records a
//! socket before it applies the probe's options and forgets it once the application's options
//! are back (or the socket is gone); the next agent, probing or not, reads what is left at start
//! ([`super::recover`]).
//!
//! One JSON file, [`JOURNAL_FILE`], in the `runtime_dir` directory, rewritten whole (a temporary
//! file renamed over it) at each change: a reader never sees half of one. No fsync: the
//! directory is a runtime one (`/run`, lost with the machine, and so are the sockets).

use std::{
    collections::BTreeMap,
    fs,
    io::{self, ErrorKind},
    net::SocketAddr,
    path::{Path, PathBuf},
};

use monitor_common::sockopt::{SockoptRequest, SockoptValues};
use serde::{Deserialize, Serialize};

/// The journal's file name in `runtime_dir`.
pub const JOURNAL_FILE: &str = "probe-journal.json";
/// Where a file that cannot be parsed is moved, beside it (the next one replaces it).
pub const SET_ASIDE_FILE: &str = "probe-journal.json.corrupt";
/// The format's version, written in the file: a file of another version is set aside.
const VERSION: u32 = 1;

/// One socket a probe changes: where it is, what to put back, and what the probe set (how to
/// tell whether the socket still carries the probe's options).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalEntry {
    /// Network namespace inode (`net->ns.inum`): the socket is reached from inside it.
    pub netns: u32,
    /// The socket's cookie (`SO_COOKIE`): unique while the machine runs, never reused.
    pub cookie: u64,
    /// For the log lines of the agent that restores it.
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// The application's options, as its `getsockopt` returned them before the probe: what
    /// [`super::machine::restore_request`] puts back.
    #[serde(with = "Values")]
    pub original: SockoptValues,
    /// The options the probe sets (keepalive on, its idle time, interval and `TCP_KEEPCNT`).
    #[serde(with = "Values")]
    pub probe: SockoptValues,
}

impl JournalEntry {
    /// Whether `now` (the socket's options as read) are still the probe's: keepalive on with the
    /// probe's interval and count. Otherwise the application changed them since, and they are
    /// its own.
    #[must_use]
    pub fn carries_probe_options(&self, now: &SockoptValues) -> bool {
        now.keepalive == 1
            && now.keepintvl_s == self.probe.keepintvl_s
            && now.keepcnt == self.probe.keepcnt
    }

    /// The request that puts the application's options back.
    #[must_use]
    pub fn restore_request(&self) -> SockoptRequest {
        super::machine::restore_request(&SockoptRequest {
            before: self.original,
            ..SockoptRequest::default()
        })
    }
}

/// [`SockoptValues`] as the file spells it (the shared crate has no serde).
#[derive(Serialize, Deserialize)]
#[serde(remote = "SockoptValues", deny_unknown_fields)]
struct Values {
    keepalive: u32,
    keepidle_s: u32,
    keepintvl_s: u32,
    keepcnt: u32,
    user_timeout_ms: u32,
}

/// The file's content.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct JournalFile {
    version: u32,
    entries: Vec<JournalEntry>,
}

/// A journal that cannot be used: the message names the file and what went wrong.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// Reading, writing or renaming the file, or creating the directory.
    #[error("probe journal {}: {step}", path.display())]
    Io {
        path: PathBuf,
        step: &'static str,
        #[source]
        source: io::Error,
    },
}

/// The journal: its file and the entries, by cookie.
#[derive(Debug)]
pub struct Journal {
    dir: PathBuf,
    entries: BTreeMap<u64, JournalEntry>,
}

impl Journal {
    /// An empty journal in `dir` (nothing read or written).
    #[must_use]
    pub fn empty(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
            entries: BTreeMap::new(),
        }
    }

    /// Reads the journal in `dir`; none there (no directory, no file) is an empty one. A file
    /// that cannot be parsed is moved aside to [`SET_ASIDE_FILE`] (logged with the reason) and
    /// the journal starts empty: the sockets it named keep the probe's options, but the agent
    /// runs.
    ///
    /// # Errors
    /// The file exists but cannot be read (permissions), or cannot be set aside.
    pub fn load(dir: &Path) -> Result<Self, JournalError> {
        let mut journal = Self::empty(dir);
        let path = journal.path();
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(journal),
            Err(source) => return Err(io_error(&path, "cannot read", source)),
        };
        match parse(&text) {
            Ok(entries) => journal.entries = entries.into_iter().map(|e| (e.cookie, e)).collect(),
            Err(problem) => {
                let aside = dir.join(SET_ASIDE_FILE);
                fs::rename(&path, &aside).map_err(|source| {
                    io_error(&path, "cannot set the corrupt file aside", source)
                })?;
                tracing::warn!(
                    journal = %path.display(),
                    set_aside = %aside.display(),
                    problem,
                    "probe journal unreadable: set aside, starting empty (the sockets it named \
                     may keep the probe's keepalive options)"
                );
            }
        }
        Ok(journal)
    }

    /// The file's path.
    #[must_use]
    pub fn path(&self) -> PathBuf {
        self.dir.join(JOURNAL_FILE)
    }

    /// Records `entry` (replacing one of the same cookie); [`save`](Self::save) writes it.
    pub fn add(&mut self, entry: JournalEntry) {
        self.entries.insert(entry.cookie, entry);
    }

    /// Forgets socket `cookie`; true when it was there.
    pub fn remove(&mut self, cookie: u64) -> bool {
        self.entries.remove(&cookie).is_some()
    }

    /// The entry of socket `cookie`.
    #[must_use]
    pub fn get(&self, cookie: u64) -> Option<&JournalEntry> {
        self.entries.get(&cookie)
    }

    /// Every entry, by cookie.
    pub fn entries(&self) -> impl Iterator<Item = &JournalEntry> {
        self.entries.values()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Writes the entries (creating the directory, mode 0700, if needed): a temporary file
    /// beside the journal, then renamed over it.
    ///
    /// # Errors
    /// The directory cannot be created, or the file written or renamed.
    ///
    /// # Panics
    /// Never: the entries are plain numbers and addresses, which always serialize.
    pub fn save(&self) -> Result<(), JournalError> {
        let path = self.path();
        create_dir(&self.dir).map_err(|e| io_error(&self.dir, "cannot create", e))?;
        let file = JournalFile {
            version: VERSION,
            entries: self.entries.values().copied().collect(),
        };
        let text = serde_json::to_string_pretty(&file).expect("plain data serializes");
        let temporary = self.dir.join(format!("{JOURNAL_FILE}.tmp"));
        fs::write(&temporary, text + "\n").map_err(|e| io_error(&temporary, "cannot write", e))?;
        fs::rename(&temporary, &path).map_err(|e| io_error(&path, "cannot replace", e))
    }
}

/// The journal and whether the file is behind it; a failing write is logged once until one
/// succeeds again.
pub(crate) struct Written {
    journal: Journal,
    changed: bool,
    failing: bool,
}

impl Written {
    pub(crate) fn new(journal: Journal) -> Self {
        Self {
            journal,
            changed: false,
            failing: false,
        }
    }

    pub(crate) fn add(&mut self, entry: JournalEntry) {
        self.journal.add(entry);
        self.changed = true;
    }

    pub(crate) fn remove(&mut self, cookie: u64) {
        self.changed |= self.journal.remove(cookie);
    }

    /// The start read `outcome.before` under the socket's lock: what its restore puts back.
    pub(crate) fn original_was(&mut self, cookie: u64, outcome: &SockoptRequest) {
        if let Some(entry) = self.journal.get(cookie)
            && entry.original != outcome.before
        {
            let entry = JournalEntry {
                original: outcome.before,
                ..*entry
            };
            self.add(entry);
        }
    }

    /// Writes the file if it is behind; true when it is up to date.
    pub(crate) fn save(&mut self) -> bool {
        if !self.changed {
            return true;
        }
        match self.journal.save() {
            Ok(()) => {
                self.changed = false;
                self.failing = false;
                true
            }
            Err(error) => {
                if !self.failing {
                    tracing::warn!(
                        error = %crate::model::format::error_chain(&error),
                        "probe journal cannot be written: no probe starts until it can"
                    );
                }
                self.failing = true;
                false
            }
        }
    }
}

/// The entries of a journal file's `text`.
///
/// # Errors
/// Not JSON, not the journal's shape, or another version: what and where, in one line.
pub(super) fn parse(text: &str) -> Result<Vec<JournalEntry>, String> {
    let file: JournalFile = serde_json::from_str(text).map_err(|e| e.to_string())?;
    if file.version != VERSION {
        return Err(format!(
            "version {} (this agent reads version {VERSION})",
            file.version
        ));
    }
    Ok(file.entries)
}

/// `dir` and its parents; mode 0700 (the journal names other processes' sockets).
fn create_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

fn io_error(path: &Path, step: &'static str, source: io::Error) -> JournalError {
    JournalError::Io {
        path: path.to_path_buf(),
        step,
        source,
    }
}

#[cfg(test)]
mod tests;
