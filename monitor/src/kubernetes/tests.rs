use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use super::{
    LabelAnswer, LabelError, LabelSource, PodIdentity, PodResolver,
    cgroup::{CgroupIds, parse},
    pod_from_labels,
};

const UID: &str = "1b3c5e7a-2d4f-4a6b-8c0d-9e1f2a3b4c5d";

fn id() -> String {
    "0123456789abcdef".repeat(4)
}

fn ids(pod_uid: Option<&str>, container_id: Option<String>) -> CgroupIds {
    CgroupIds {
        pod_uid: pod_uid.map(str::to_owned),
        container_id,
    }
}

#[test]
fn systemd_driver_paths_give_the_uid_with_dashes_and_the_container() {
    let uid_ = UID.replace('-', "_");
    let id = id();
    for runtime in ["cri-containerd", "crio", "docker"] {
        let path = format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid_}.slice/{runtime}-{id}.scope"
        );
        assert_eq!(parse(&path), ids(Some(UID), Some(id.clone())), "{path}");
    }
    // Guaranteed pods sit directly under kubepods.slice.
    let guaranteed = format!("/kubepods.slice/kubepods-pod{uid_}.slice/cri-containerd-{id}.scope");
    assert_eq!(parse(&guaranteed), ids(Some(UID), Some(id)));
}

#[test]
fn cgroupfs_driver_paths_and_nested_nodes() {
    let id = id();
    assert_eq!(
        parse(&format!("/kubepods/burstable/pod{UID}/{id}")),
        ids(Some(UID), Some(id.clone()))
    );
    assert_eq!(
        parse(&format!("/kubepods/pod{UID}/{id}")),
        ids(Some(UID), Some(id.clone()))
    );
    // A node that is itself a container (kind): the innermost id is the pod's container.
    let node = "f".repeat(64);
    assert_eq!(
        parse(&format!(
            "/system.slice/docker-{node}.scope/kubepods/besteffort/pod{UID}/{id}"
        )),
        ids(Some(UID), Some(id.clone()))
    );
    // A static pod's UID is a hash without dashes.
    let static_uid = "6b3f2e0c9a8d7e6f5a4b3c2d1e0f9a8b";
    assert_eq!(
        parse(&format!("/kubepods/burstable/pod{static_uid}/{id}")).pod_uid,
        Some(static_uid.to_owned())
    );
}

#[test]
fn paths_outside_pods() {
    let id = id();
    assert_eq!(parse("/system.slice/redis.service"), ids(None, None));
    assert_eq!(
        parse("/user.slice/user-1000.slice/session-2.scope"),
        ids(None, None)
    );
    assert_eq!(
        parse(&format!("/system.slice/docker-{id}.scope")),
        ids(None, Some(id)),
        "a container not in a pod"
    );
    // The QoS slices alone (a pod's own processes have a pod component).
    assert_eq!(
        parse("/kubepods.slice/kubepods-burstable.slice"),
        ids(None, None)
    );
    assert_eq!(parse("/kubepods/podnotauid/x").pod_uid, None);
}

fn labels(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn cri_labels() -> HashMap<String, String> {
    labels(&[
        ("io.kubernetes.pod.name", "web-7d9f"),
        ("io.kubernetes.pod.namespace", "shop"),
        ("io.kubernetes.pod.uid", UID),
        ("io.kubernetes.container.name", "nginx"),
        ("io.cri-containerd.kind", "container"),
    ])
}

#[test]
fn labels_give_the_names_and_the_path_the_uid() {
    let identity = pod_from_labels(&cri_labels(), None).unwrap();
    assert_eq!(
        identity,
        PodIdentity::new(
            Some("shop".into()),
            Some("web-7d9f".into()),
            Some(UID.into()),
            Some("nginx".into()),
        )
    );
    assert_eq!(identity.owner().map(|o| &**o), Some("shop/web-7d9f"));
    assert_eq!(identity.qualified_name().as_deref(), Some("shop/web-7d9f"));
    let from_path = pod_from_labels(&cri_labels(), Some("other-uid")).unwrap();
    assert_eq!(
        from_path.pod_uid.as_deref(),
        Some("other-uid"),
        "the path wins"
    );
    // Not created by Kubernetes, not in a pod's cgroup: no identity.
    assert_eq!(pod_from_labels(&labels(&[("app", "x")]), None), None);
    // A pod name with no namespace label still names the pod.
    let bare = pod_from_labels(&labels(&[("io.kubernetes.pod.name", "p")]), None);
    assert_eq!(bare.unwrap().qualified_name().as_deref(), Some("-/p"));
    assert_eq!(PodIdentity::default().qualified_name(), None);
}

/// A runtime that knows one container, counts questions, and can be made to fail.
struct FakeRuntime {
    questions: Arc<AtomicUsize>,
    answer: fn() -> LabelAnswer,
}

impl LabelSource for FakeRuntime {
    fn labels(&mut self, id: &str) -> LabelAnswer {
        self.questions.fetch_add(1, Ordering::Relaxed);
        let answer = (self.answer)()?;
        Ok(answer.filter(|_| id == self::id()))
    }
}

fn resolver(answer: fn() -> LabelAnswer) -> (PodResolver, Arc<AtomicUsize>) {
    let questions = Arc::new(AtomicUsize::new(0));
    let runtime = FakeRuntime {
        questions: Arc::clone(&questions),
        answer,
    };
    (PodResolver::new(Box::new(runtime)), questions)
}

fn pod_path(id: &str) -> String {
    format!("/kubepods/burstable/pod{UID}/{id}")
}

#[test]
fn the_runtime_is_asked_once_per_container_and_the_identity_shared() {
    let (mut pods, questions) = resolver(|| Ok(Some(cri_labels())));
    let first = pods.resolve(&pod_path(&id())).unwrap();
    assert_eq!(first.pod.as_deref(), Some("web-7d9f"));
    let again = pods.resolve(&pod_path(&id())).unwrap();
    assert!(Arc::ptr_eq(&first, &again), "one identity per container");
    assert_eq!(questions.load(Ordering::Relaxed), 1);
    // A container the runtime does not know: the path's UID, remembered too.
    let unknown = "e".repeat(64);
    let uid_only = pods.resolve(&pod_path(&unknown)).unwrap();
    assert_eq!(
        (uid_only.pod_uid.as_deref(), uid_only.pod.as_deref()),
        (Some(UID), None)
    );
    pods.resolve(&pod_path(&unknown));
    assert_eq!(questions.load(Ordering::Relaxed), 2);
    // Not a container at all: nothing to ask.
    assert_eq!(pods.resolve("/system.slice/sshd.service"), None);
    assert_eq!(questions.load(Ordering::Relaxed), 2);
}

#[test]
fn without_the_runtime_the_uid_only_and_one_question_per_retry_period() {
    let (mut pods, questions) = resolver(|| Err(LabelError::Failed("connection refused".into())));
    for _ in 0..3 {
        let identity = pods.resolve(&pod_path(&id())).unwrap();
        assert_eq!(
            *identity,
            PodIdentity::new(None, None, Some(UID.into()), None)
        );
        assert_eq!(identity.owner(), None, "no name to group by");
    }
    assert_eq!(questions.load(Ordering::Relaxed), 1, "then left alone");
    let (mut absent, _) = resolver(|| Err(LabelError::Absent("no socket".into())));
    assert_eq!(absent.resolve("/system.slice/sshd.service"), None);
    let id = id();
    assert_eq!(
        absent.resolve(&format!("/system.slice/docker-{id}.scope")),
        None
    );
}
