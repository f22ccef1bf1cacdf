//! A pod as a CRI runtime makes it, named through the CRI: containerd's own CRI plugin (the CRI
//! API CRI-O serves too) runs a pod sandbox and a busybox container created THROUGH the CRI
//! (`RunPodSandbox`, `CreateContainer`, `StartContainer`), with the CRI labels kubelet sets,
//! the node's network (no CNI) and a cgroupfs-driver cgroup parent. Its container connects to a
//! server on the host's loopback that closes at once and never closes its end (`CLOSE_WAIT`,
//! held by `sleep`). The agent, given `--runtime-endpoint` at that socket and a containerd
//! socket that does not exist, must name the pod, namespace, pod UID and container of the leak
//! in `/connections`, and say in its log that it asks the CRI runtime. `ss -tanp` and
//! `/proc/PID/cgroup` are the oracle for whose socket it is. Run as root, one module at a time;
//! under CI=true a missing runtime binary fails instead of skipping.

use std::{
    collections::HashMap,
    fs,
    net::TcpListener,
    os::unix::fs::MetadataExt as _,
    path::Path,
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use containerd_client::tonic::transport::Channel;
use harness::{
    agent::Agent,
    containerd::{Containerd, Pod, remove_empty_slices},
    containerd_cri::IMAGE,
    privilege::Need,
    ss,
    wait::{self, wait_for},
};
use k8s_cri::v1::{
    ContainerConfig, ContainerMetadata, CreateContainerRequest, ImageSpec, LinuxContainerConfig,
    LinuxContainerSecurityContext, LinuxPodSandboxConfig, LinuxSandboxSecurityContext,
    NamespaceMode, NamespaceOption, PodSandboxConfig, PodSandboxMetadata, RemovePodSandboxRequest,
    RunPodSandboxRequest, StartContainerRequest, StopPodSandboxRequest, VersionRequest,
    runtime_service_client::RuntimeServiceClient,
};
use serde_json::json;

use crate::{
    common::{SCANS_TO_SHOW, agent_only},
    kubernetes::runtime_installed,
    verdicts::has_reason,
};

/// The leak's threshold: short so the test runs in seconds.
const CLOSE_WAIT_AFTER: Duration = Duration::from_secs(2);

/// How long the CRI plugin may take to answer once containerd answers.
const CRI_READY_WITHIN: Duration = Duration::from_secs(30);

/// A CRI client with the runtime that drives it (the test is not async).
struct Cri {
    runtime: tokio::runtime::Runtime,
    client: RuntimeServiceClient<Channel>,
}

impl Cri {
    /// Connected to `socket`, once the runtime service answers `Version`.
    fn connect(socket: &Path) -> Self {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let channel = runtime
            .block_on(containerd_client::connect(socket))
            .expect("connect to the CRI socket");
        let mut cri = Self {
            runtime,
            client: RuntimeServiceClient::new(channel),
        };
        let ready = wait::poll(CRI_READY_WITHIN, wait::POLL_EVERY, || {
            let answer = cri
                .runtime
                .block_on(cri.client.version(VersionRequest::default()));
            anyhow::Ok(answer.ok())
        });
        let version = ready.expect("ask Version").expect("the CRI plugin answers");
        eprintln!("CRI runtime: {:?}", version.into_inner());
        cri
    }
}

/// What kubelet gives a `hostNetwork`/`hostIPC` pod's sandbox and containers: the node's network
/// and ipc namespaces (no CNI, no shared-memory mount to undo), the pod's own pid namespace.
fn node_network() -> NamespaceOption {
    NamespaceOption {
        network: NamespaceMode::Node.into(),
        pid: NamespaceMode::Pod.into(),
        ipc: NamespaceMode::Node.into(),
        ..NamespaceOption::default()
    }
}

/// A pod sandbox run through the CRI; stopped and removed (with its containers) on drop, and
/// its cgroup parent removed once empty.
struct Sandbox<'a> {
    cri: &'a mut Cri,
    id: String,
    config: PodSandboxConfig,
    pod: Pod,
}

impl<'a> Sandbox<'a> {
    /// `RunPodSandbox` of `pod` with the CRI labels, logs under `logs`.
    fn run(cri: &'a mut Cri, pod: &Pod, containerd: &Containerd) -> Self {
        let logs = containerd.dir().join("pod-logs");
        fs::create_dir_all(&logs).expect("the pod's log directory");
        let config = PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: pod.name.clone(),
                uid: pod.uid.clone(),
                namespace: pod.namespace.clone(),
                attempt: 0,
            }),
            // A pod on the node's network has the node's hostname: none of its own.
            hostname: String::new(),
            log_directory: logs.to_string_lossy().into_owned(),
            labels: cri_labels(pod, None),
            linux: Some(LinuxPodSandboxConfig {
                cgroup_parent: pod.cgroupfs_parent(),
                security_context: Some(LinuxSandboxSecurityContext {
                    namespace_options: Some(node_network()),
                    ..LinuxSandboxSecurityContext::default()
                }),
                ..LinuxPodSandboxConfig::default()
            }),
            ..PodSandboxConfig::default()
        };
        let request = RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: String::new(),
        };
        let answer = cri.runtime.block_on(cri.client.run_pod_sandbox(request));
        let answer =
            answer.unwrap_or_else(|e| panic!("RunPodSandbox: {e}\n{}", containerd.log_tail()));
        let id = answer.into_inner().pod_sandbox_id;
        Self {
            cri,
            id,
            config,
            pod: pod.clone(),
        }
    }

    /// `CreateContainer` and `StartContainer` of container `name` running `command` from
    /// [`IMAGE`]; its id.
    fn start(&mut self, name: &str, command: &[&str]) -> String {
        let config = ContainerConfig {
            metadata: Some(ContainerMetadata {
                name: name.into(),
                attempt: 0,
            }),
            image: Some(ImageSpec {
                image: IMAGE.into(),
                ..ImageSpec::default()
            }),
            command: command.iter().map(|&arg| arg.to_owned()).collect(),
            labels: cri_labels(&self.pod, Some(name)),
            log_path: format!("{name}.log"),
            linux: Some(LinuxContainerConfig {
                security_context: Some(LinuxContainerSecurityContext {
                    namespace_options: Some(node_network()),
                    ..LinuxContainerSecurityContext::default()
                }),
                ..LinuxContainerConfig::default()
            }),
            ..ContainerConfig::default()
        };
        let request = CreateContainerRequest {
            pod_sandbox_id: self.id.clone(),
            config: Some(config),
            sandbox_config: Some(self.config.clone()),
        };
        let Cri { runtime, client } = &mut *self.cri;
        let created = runtime.block_on(client.create_container(request));
        let id = created.expect("CreateContainer").into_inner().container_id;
        let start = StartContainerRequest {
            container_id: id.clone(),
        };
        runtime
            .block_on(client.start_container(start))
            .expect("StartContainer");
        id
    }
}

impl Drop for Sandbox<'_> {
    fn drop(&mut self) {
        let Cri { runtime, client } = &mut *self.cri;
        let id = self.id.clone();
        let _ = runtime.block_on(client.stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: id.clone(),
        }));
        let _ = runtime
            .block_on(client.remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: id }));
        remove_empty_slices(&self.pod.cgroupfs_parent());
    }
}

/// The CRI labels kubelet sets on `pod`'s sandbox, and with `container` on a container.
fn cri_labels(pod: &Pod, container: Option<&str>) -> HashMap<String, String> {
    let mut labels = HashMap::from([
        ("io.kubernetes.pod.name".to_owned(), pod.name.clone()),
        (
            "io.kubernetes.pod.namespace".to_owned(),
            pod.namespace.clone(),
        ),
        ("io.kubernetes.pod.uid".to_owned(), pod.uid.clone()),
    ]);
    if let Some(container) = container {
        labels.insert("io.kubernetes.container.name".into(), container.into());
    }
    labels
}

/// A server on the host's loopback that closes every connection it accepts at once; stopped on
/// drop.
struct ClosingServer {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ClosingServer {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        listener.set_nonblocking(true).expect("non-blocking");
        let port = listener.local_addr().expect("its address").port();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                match listener.accept() {
                    // Closed at once: the client's end goes to CLOSE_WAIT.
                    Ok((stream, _)) => drop(stream),
                    Err(_) => std::thread::sleep(wait::POLL_EVERY),
                }
            }
        });
        Self {
            port,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for ClosingServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The pid holding the host's `CLOSE_WAIT` socket to `port` on loopback, by `ss -tanp`.
fn leak_holder(agent: &Agent, port: u16) -> u32 {
    let peer = format!("127.0.0.1:{port}");
    wait_for("the CLOSE_WAIT socket", agent.scans(SCANS_TO_SHOW), || {
        let out = Command::new("ss").arg("-tanpO").output().expect("run ss");
        assert!(out.status.success(), "ss -tanpO: {}", out.status);
        let sockets = ss::parse(&String::from_utf8_lossy(&out.stdout));
        let socket = sockets
            .into_iter()
            .find(|s| s.state == "close_wait" && s.remote == peer)?;
        socket.holders().into_keys().next()
    })
}

#[test]
fn a_pod_made_through_cri_is_named_by_the_cri_runtime() {
    let Some(sc) = agent_only("kubernetes_cri", Need::RootAndKernelBtf) else {
        return;
    };
    if !runtime_installed() {
        return;
    }
    let server = ClosingServer::start();
    let containerd = Containerd::start_with_cri().expect("containerd with its CRI plugin");
    let socket = containerd.socket();
    let log = tempfile::NamedTempFile::new().expect("a log file");
    let endpoint = format!("unix://{}", socket.display());
    let absent = containerd.dir().join("no-containerd-api.sock");
    let agent = sc
        .launch()
        .rust_log(Some("info"))
        .log_to(log.reopen().expect("reopen the log"))
        .args(&[
            "--close-wait-after",
            "2s",
            "--containerd-socket",
            absent.to_str().expect("UTF-8 path"),
            "--runtime-endpoint",
            &endpoint,
        ])
        .start()
        .expect("agent");

    let mut cri = Cri::connect(&socket);
    let pod = Pod::new("shop", "cart-cri-7d9f", 2);
    let mut sandbox = Sandbox::run(&mut cri, &pod, &containerd);
    let port = server.port.to_string();
    let command = ["/bin/nc", "127.0.0.1", &port, "-e", "/bin/sleep", "3600"];
    let container = sandbox.start("cart", &command);

    // The oracle: who holds the socket, and that it runs in the container's cgroup.
    let pid = leak_holder(&agent, server.port);
    let cgroup = format!("{}/{container}", pod.cgroupfs_parent());
    let cgroups = fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("read its cgroup");
    assert!(
        cgroups
            .lines()
            .any(|l| l.strip_prefix("0::") == Some(&cgroup)),
        "pid {pid} is not in {cgroup}: {cgroups}"
    );

    let host = fs::metadata("/proc/self/ns/net")
        .expect("the host's netns")
        .ino();
    let leak = wait_for(
        "the pod's close_wait_stuck verdict",
        agent.after(CLOSE_WAIT_AFTER),
        || {
            agent
                .connections_in(host)
                .into_iter()
                .find(|c| c["pid"] == pid && has_reason(c, "close_wait_stuck"))
        },
    );
    let identity = json!({
        "namespace": pod.namespace,
        "pod": pod.name,
        "pod_uid": pod.uid,
        "container": "cart",
    });
    assert_eq!(leak["kubernetes"], identity, "{leak}");
    assert_eq!(leak["container"], container.as_str(), "{leak}");
    let said = fs::read_to_string(log.path()).expect("read the agent's log");
    let asks = format!("pod names from the CRI runtime at {}", socket.display());
    assert!(
        said.contains(&asks),
        "the agent asks the CRI runtime: {said}"
    );
    drop(sandbox);
}
