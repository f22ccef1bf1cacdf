//! A process's cgroup v2 path → the pod UID and the container id the kubelet and the runtime
//! put in it. The shapes:
//! - systemd driver: `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid>.slice/cri-containerd-<id>.scope`,
//!   the UID's `-` written `_` (`kubepods-pod<uid>.slice` for guaranteed pods); CRI-O's
//!   `crio-<id>.scope`, docker's `docker-<id>.scope`;
//! - cgroupfs driver: `/kubepods/burstable/pod<uid>/<id>` (`/kubepods/pod<uid>/<id>`).
//!
//! Either may sit under another prefix (a node that is itself a container).

use crate::model::container_id;

/// What a cgroup path says about a container: each part when the path has it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CgroupIds {
    /// The pod's UID, with `-` (as the API server spells it) whichever driver wrote the path.
    pub pod_uid: Option<String>,
    /// The container id: the 64-hex-digit id the runtime named the container's cgroup after.
    pub container_id: Option<String>,
}

/// The pod UID and container id in `cgroup` (a `/proc/PID/cgroup` v2 path). A path outside
/// `kubepods` has no pod UID; it may still have a container id (a container not in a pod).
#[must_use]
pub fn parse(cgroup: &str) -> CgroupIds {
    CgroupIds {
        pod_uid: pod_uid(cgroup),
        container_id: container_id(cgroup),
    }
}

/// The UID of the `pod<uid>` component below a `kubepods` component.
fn pod_uid(cgroup: &str) -> Option<String> {
    let mut components = cgroup.split('/');
    components.find(|c| c.starts_with("kubepods"))?;
    components.find_map(|component| {
        // cgroupfs: `pod<uid>`, the UID with its dashes; systemd: `kubepods-…-pod<uid>.slice`,
        // the last `-`-separated part (the UID's dashes are `_` there).
        let uid = component.strip_prefix("pod").or_else(|| {
            let slice = component.strip_suffix(".slice")?;
            slice.rsplit('-').next()?.strip_prefix("pod")
        })?;
        let is_uid = !uid.is_empty()
            && uid
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == '-' || c == '_');
        is_uid.then(|| uid.replace('_', "-"))
    })
}
