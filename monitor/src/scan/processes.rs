//! Who owns a socket, as `/proc` tells it, cached per pid: the process name of the thread group
//! leader (`/proc/PID/comm`, so a threaded server is one process whatever its threads are
//! called) and the cgroup v2 path (container attribution).
//!
//! One `Arc<str>` per pid, shared by every connection of that process: attribution costs a
//! reference count per socket, not a string.

use std::sync::Arc;

use super::kernel_state::FastMap;
use crate::{
    kubernetes::{PodIdentity, PodResolver},
    model::Comm,
};

/// What `/proc` says about one process.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ProcessInfo {
    /// The thread group leader's `comm` (`/proc/PID/comm`); None once the process is gone.
    pub(crate) name: Option<Comm>,
    /// The cgroup v2 path (`0::` line of `/proc/PID/cgroup`).
    pub(crate) cgroup: Option<Arc<str>>,
    /// The Kubernetes pod the process runs in, from its cgroup path and the runtime's labels
    /// (None without a pod, or without a [`PodResolver`]).
    pub(crate) pod: Option<Arc<PodIdentity>>,
}

pub(crate) struct ProcessCache {
    /// Pids looked up since the current scan started.
    current: FastMap<u32, ProcessInfo>,
    /// Pids of the previous scan not looked up again yet; dropped at the end of the scan.
    previous: FastMap<u32, ProcessInfo>,
    /// The last pid answered: a process's sockets tend to sit in neighbouring slots, so most
    /// lookups in a pass are the same pid as the one before (no hash at all).
    last: Option<(u32, ProcessInfo)>,
    /// Where a pid's information comes from: `/proc/PID` (a fixed table in tests).
    lookup: fn(u32) -> ProcessInfo,
    /// Names the pod of each new pid's cgroup, when the agent resolves pods: asked once per pid
    /// the cache did not know (it caches by container id in turn).
    pods: Option<PodResolver>,
    /// Whether a lookup may ask the runtime (which can take up to the resolver's timeout): not
    /// for readers between scans ([`without_asking_runtime`](Self::without_asking_runtime)).
    asks_runtime: bool,
}

impl Default for ProcessCache {
    fn default() -> Self {
        Self::with_lookup(read)
    }
}

impl ProcessCache {
    pub(crate) fn with_lookup(lookup: fn(u32) -> ProcessInfo) -> Self {
        Self {
            current: FastMap::default(),
            previous: FastMap::default(),
            last: None,
            lookup,
            pods: None,
            asks_runtime: true,
        }
    }

    /// Runs `f` with lookups that never ask the container runtime: a pid new to the cache is
    /// read from `/proc` and shown without its pod, and left for the next scan to resolve (it is
    /// not cached). For `/connections` readers, which lock the cache per socket between scans:
    /// a runtime that is slow to answer must not hold up the scan waiting for the lock.
    pub(crate) fn without_asking_runtime<R>(&mut self, f: impl FnOnce(&mut Self) -> R) -> R {
        self.asks_runtime = false;
        let result = f(self);
        self.asks_runtime = true;
        result
    }

    /// Also resolves each new pid's pod with `pods`.
    pub(crate) fn with_pods(self, pods: PodResolver) -> Self {
        Self {
            pods: Some(pods),
            ..self
        }
    }

    /// Starts a full pass over the table: pids not looked up again before [`end_scan`] are
    /// forgotten (pids get reused).
    ///
    /// [`end_scan`]: Self::end_scan
    pub(crate) fn start_scan(&mut self) {
        self.previous = std::mem::take(&mut self.current);
        self.last = None;
    }

    /// Ends the pass: pids of the previous pass not seen in this one are forgotten.
    pub(crate) fn end_scan(&mut self) {
        self.previous = FastMap::default();
    }

    /// What `/proc` says about `pid`. Reads it only for pids not seen in the previous scan.
    /// Borrowed: a pass asks once per socket, mostly for the pid it asked for last, and
    /// takes only what it keeps.
    pub(crate) fn info(&mut self, pid: u32) -> &ProcessInfo {
        if self.last.as_ref().is_none_or(|(last, _)| *last != pid) {
            let info = if let Some(info) = self.current.get(&pid) {
                info.clone()
            } else {
                let (mut info, resolve) = match self.previous.remove(&pid) {
                    // Seen at the last scan: its pod was resolved then, unless the runtime
                    // could not name it (asked again: the resolver answers from its cache, or
                    // stays quiet for a while after a failure, so this is a lookup per such pid
                    // and scan, not a question to the runtime).
                    Some(info) => {
                        let unnamed = info.pod.as_ref().is_some_and(|p| p.pod.is_none());
                        (info, unnamed)
                    }
                    None => ((self.lookup)(pid), true),
                };
                let unresolved = resolve && self.pods.is_some() && info.cgroup.is_some();
                if unresolved && !self.asks_runtime {
                    // Not cached: the next scan looks it up and asks the runtime.
                    self.last = Some((pid, info));
                    return &self.last.as_ref().expect("set above").1;
                }
                if resolve && let (Some(pods), Some(cgroup)) = (&mut self.pods, &info.cgroup) {
                    info.pod = pods.resolve(cgroup);
                }
                self.current.insert(pid, info.clone());
                info
            };
            self.last = Some((pid, info));
        }
        &self.last.as_ref().expect("set above").1
    }
}

fn read(pid: u32) -> ProcessInfo {
    let file = |name: &str| std::fs::read(format!("/proc/{pid}/{name}")).ok();
    ProcessInfo {
        // Bytes: a name that is not UTF-8 takes the one lossy path every name takes.
        name: file("comm").map(|comm| Comm::from_proc(&comm)),
        cgroup: file("cgroup")
            .as_deref()
            .map(String::from_utf8_lossy)
            .as_deref()
            .and_then(parse_cgroup)
            .map(Arc::from),
        pod: None,
    }
}

/// The unified (v2) hierarchy line is `0::/path`; hybrid hosts list v1 controllers too.
fn parse_cgroup(text: &str) -> Option<&str> {
    text.lines().find_map(|l| l.strip_prefix("0::"))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[test]
    fn picks_the_unified_hierarchy() {
        let hybrid = "12:pids:/user.slice\n1:name=systemd:/user.slice/session-1.scope\n0::/system.slice/redis.service\n";
        assert_eq!(parse_cgroup(hybrid), Some("/system.slice/redis.service"));
        assert_eq!(parse_cgroup("3:cpu:/\n"), None);
    }

    static LOOKUPS: AtomicUsize = AtomicUsize::new(0);

    /// A fixed lookup: pid 7 is redis-server in redis.service, every other pid is gone; counts
    /// calls.
    fn fixed(pid: u32) -> ProcessInfo {
        LOOKUPS.fetch_add(1, Ordering::Relaxed);
        if pid != 7 {
            return ProcessInfo::default();
        }
        ProcessInfo {
            name: Some(Comm::new("redis-server")),
            cgroup: Some(Arc::from("/system.slice/redis.service")),
            pod: None,
        }
    }

    #[test]
    fn one_lookup_per_pid_shared_string_forgotten_after_an_unseen_scan() {
        let mut cache = ProcessCache::with_lookup(fixed);
        cache.start_scan();
        let first = cache.info(7).cgroup.clone().expect("pid 7 has a cgroup");
        assert_eq!(&*first, "/system.slice/redis.service");
        assert_eq!(cache.info(7).name, Some(Comm::new("redis-server")));
        let again = cache.info(7).cgroup.clone().unwrap();
        assert!(Arc::ptr_eq(&first, &again), "one string per pid");
        assert_eq!(cache.info(8), &ProcessInfo::default());
        assert_eq!(LOOKUPS.load(Ordering::Relaxed), 2, "pid 7 once, pid 8 once");
        cache.end_scan();
        // Kept across one scan boundary without another lookup...
        cache.start_scan();
        assert!(Arc::ptr_eq(&first, cache.info(7).cgroup.as_ref().unwrap()));
        assert_eq!(LOOKUPS.load(Ordering::Relaxed), 2);
        cache.end_scan();
        // ...forgotten after a scan that did not see the pid (pids get reused).
        cache.start_scan();
        cache.end_scan();
        assert!(cache.current.is_empty() && cache.previous.is_empty());
        cache.start_scan();
        cache.info(7);
        assert_eq!(LOOKUPS.load(Ordering::Relaxed), 3);
    }

    /// A pid in a pod container: its pod is resolved when the pid is new, once, and shared by
    /// the pid's lookups; the runtime is asked once for the container, not once per pid.
    #[test]
    fn new_pids_get_their_pod_once_per_container() {
        use std::collections::HashMap;

        use crate::kubernetes::{LabelAnswer, LabelSource};

        static QUESTIONS: AtomicUsize = AtomicUsize::new(0);
        struct OnePod;
        impl LabelSource for OnePod {
            fn labels(&mut self, _: &str) -> LabelAnswer {
                QUESTIONS.fetch_add(1, Ordering::Relaxed);
                let label = |k: &str, v: &str| (k.to_owned(), v.to_owned());
                Ok(Some(HashMap::from([
                    label("io.kubernetes.pod.name", "web-1"),
                    label("io.kubernetes.pod.namespace", "shop"),
                ])))
            }
        }
        fn in_pod(_pid: u32) -> ProcessInfo {
            let id = "ab".repeat(32);
            ProcessInfo {
                name: Some(Comm::new("nginx")),
                cgroup: Some(Arc::from(format!("/kubepods/pod1b3c/{id}").as_str())),
                pod: None,
            }
        }
        let pods = PodResolver::new(Box::new(OnePod));
        let mut cache = ProcessCache::with_lookup(in_pod).with_pods(pods);
        cache.start_scan();
        let first = cache.info(10).pod.clone().expect("pod 10");
        assert_eq!(first.qualified_name().as_deref(), Some("shop/web-1"));
        assert_eq!(first.pod_uid.as_deref(), Some("1b3c"));
        let second = cache.info(11).pod.clone().expect("pod 11");
        assert!(Arc::ptr_eq(&first, &second), "one identity per container");
        cache.info(10);
        assert_eq!(QUESTIONS.load(Ordering::Relaxed), 1);
    }

    /// A reader between scans never asks the runtime: a new pid shows without its pod, and the
    /// next scan asks once and caches the answer.
    #[test]
    fn readers_never_ask_the_runtime_the_next_scan_does() {
        use std::collections::HashMap;

        use crate::kubernetes::{LabelAnswer, LabelSource};

        static ASKED: AtomicUsize = AtomicUsize::new(0);
        struct Counted;
        impl LabelSource for Counted {
            fn labels(&mut self, _: &str) -> LabelAnswer {
                ASKED.fetch_add(1, Ordering::Relaxed);
                let label = |k: &str, v: &str| (k.to_owned(), v.to_owned());
                Ok(Some(HashMap::from([
                    label("io.kubernetes.pod.name", "api-0"),
                    label("io.kubernetes.pod.namespace", "shop"),
                ])))
            }
        }
        fn in_pod(_pid: u32) -> ProcessInfo {
            ProcessInfo {
                name: Some(Comm::new("api")),
                cgroup: Some(Arc::from(
                    format!("/kubepods/pod77aa/{}", "ef".repeat(32)).as_str(),
                )),
                pod: None,
            }
        }
        let pods = PodResolver::new(Box::new(Counted));
        let mut cache = ProcessCache::with_lookup(in_pod).with_pods(pods);
        let read = cache.without_asking_runtime(|c| c.info(20).clone());
        assert_eq!(read.name, Some(Comm::new("api")), "named from /proc");
        assert!(read.pod.is_none(), "no pod before a scan asked");
        assert_eq!(ASKED.load(Ordering::Relaxed), 0);
        cache.start_scan();
        let scanned = cache.info(20).pod.clone().expect("the scan names it");
        assert_eq!(scanned.qualified_name().as_deref(), Some("shop/api-0"));
        assert_eq!(ASKED.load(Ordering::Relaxed), 1);
        cache.end_scan();
        let again = cache.without_asking_runtime(|c| c.info(20).pod.clone());
        assert!(again.is_some_and(|p| Arc::ptr_eq(&p, &scanned)), "cached");
        assert_eq!(ASKED.load(Ordering::Relaxed), 1);
    }

    /// A pid first seen while the runtime could not be asked has its pod's UID only; a later
    /// scan names its pod once the runtime answers.
    #[test]
    fn a_pod_the_runtime_could_not_name_is_named_at_a_later_scan() {
        use std::collections::HashMap;

        use crate::kubernetes::{LabelAnswer, LabelError, LabelSource};

        struct DownThenUp(usize);
        impl LabelSource for DownThenUp {
            fn labels(&mut self, _: &str) -> LabelAnswer {
                self.0 += 1;
                if self.0 == 1 {
                    return Err(LabelError::Failed("not yet".into()));
                }
                let label = |k: &str, v: &str| (k.to_owned(), v.to_owned());
                Ok(Some(HashMap::from([
                    label("io.kubernetes.pod.name", "web-1"),
                    label("io.kubernetes.pod.namespace", "shop"),
                ])))
            }
        }
        fn in_pod(_pid: u32) -> ProcessInfo {
            ProcessInfo {
                name: Some(Comm::new("nginx")),
                cgroup: Some(Arc::from(
                    format!("/kubepods/pod1b3c/{}", "cd".repeat(32)).as_str(),
                )),
                pod: None,
            }
        }
        let pods = PodResolver::retrying_at_once(Box::new(DownThenUp(0)));
        let mut cache = ProcessCache::with_lookup(in_pod).with_pods(pods);
        cache.start_scan();
        let first = cache.info(10).pod.clone().expect("the UID from the path");
        assert_eq!(
            (first.pod.as_deref(), first.pod_uid.as_deref()),
            (None, Some("1b3c"))
        );
        cache.end_scan();
        cache.start_scan();
        let named = cache.info(10).pod.clone().expect("pod 10");
        assert_eq!(named.qualified_name().as_deref(), Some("shop/web-1"));
    }

    /// The name of a process is its thread group leader's, as /proc/PID/comm gives it: this
    /// test's own process, whatever the test thread is called.
    #[test]
    fn reads_the_leaders_name_and_cgroup_of_this_process() {
        let ours = read(std::process::id());
        let leader = std::fs::read_to_string("/proc/self/comm").unwrap();
        assert_eq!(ours.name, Some(Comm::new(leader.trim_end())));
        assert_eq!(read(u32::MAX).name, None, "no such process");
    }
}
