//! `[kubernetes]`, `--containerd-socket`, `--runtime-endpoint` and the pod matcher keys.

use std::path::{Path, PathBuf};

use clap::{Args as _, Command};

use super::{
    tests::{file_error, resolve},
    *,
};

#[test]
fn defaults_file_and_flag() {
    let defaults = resolve(&RunArgs::default(), "").unwrap().kubernetes;
    assert_eq!(
        defaults,
        KubernetesSettings {
            containerd_socket: PathBuf::from("/run/containerd/containerd.sock"),
            containerd_namespace: "k8s.io".into(),
            runtime_endpoint: None,
        }
    );
    let text = "[kubernetes]\ncontainerd_socket = \"/run/k3s/containerd/containerd.sock\"\n\
                containerd_namespace = \"k8s.io-test\"\n";
    let file = resolve(&RunArgs::default(), text).unwrap().kubernetes;
    assert_eq!(
        file.containerd_socket,
        Path::new("/run/k3s/containerd/containerd.sock")
    );
    assert_eq!(file.containerd_namespace, "k8s.io-test");
    let args = RunArgs {
        containerd_socket: Some("/tmp/c.sock".into()),
        ..RunArgs::default()
    };
    let flag = resolve(&args, text).unwrap().kubernetes;
    assert_eq!(
        flag.containerd_socket,
        Path::new("/tmp/c.sock"),
        "the flag wins"
    );
}

#[test]
fn runtime_endpoint_is_a_path_or_a_unix_url_and_the_flag_wins() {
    let endpoint =
        |args: &RunArgs, text: &str| resolve(args, text).unwrap().kubernetes.runtime_endpoint;
    let crio = Some(PathBuf::from("/run/crio/crio.sock"));
    for text in [
        "[kubernetes]\nruntime_endpoint = \"/run/crio/crio.sock\"",
        "[kubernetes]\nruntime_endpoint = \"unix:///run/crio/crio.sock\"",
    ] {
        assert_eq!(endpoint(&RunArgs::default(), text), crio, "{text}");
    }
    let file = "[kubernetes]\nruntime_endpoint = \"/run/crio/crio.sock\"";
    let flag = RunArgs {
        runtime_endpoint: Some("unix:///run/cri.sock".into()),
        ..RunArgs::default()
    };
    assert_eq!(endpoint(&flag, file), Some(PathBuf::from("/run/cri.sock")));
    // An empty flag unsets the file's: containerd's API again.
    let empty = RunArgs {
        runtime_endpoint: Some(String::new()),
        ..RunArgs::default()
    };
    assert_eq!(endpoint(&empty, file), None);
}

#[test]
fn the_flag_is_documented_with_its_default() {
    let command = RunArgs::augment_args(Command::new("run"));
    let flag = command
        .get_arguments()
        .find(|a| a.get_long() == Some("containerd-socket"))
        .expect("--containerd-socket");
    let help = flag.get_help().unwrap().to_string();
    assert!(
        help.ends_with("[default: /run/containerd/containerd.sock]"),
        "{help}"
    );
    let endpoint = command
        .get_arguments()
        .find(|a| a.get_long() == Some("runtime-endpoint"))
        .expect("--runtime-endpoint");
    let help = endpoint.get_help().unwrap().to_string();
    assert!(help.ends_with("[default: none]"), "{help}");
    assert!(
        !command
            .get_arguments()
            .any(|a| a.get_long() == Some("containerd-namespace")),
        "file only"
    );
}

#[test]
fn bad_values_are_one_line_naming_the_key() {
    let cases = [
        (
            "[kubernetes]\ncontainerd_socket = \"run/c.sock\"",
            r#"[kubernetes] containerd_socket: expected an absolute socket path, got "run/c.sock""#,
        ),
        (
            "[kubernetes]\ncontainerd_namespace = \"k8s io\"",
            r#"[kubernetes] containerd_namespace: expected a containerd namespace (letters, digits, '.', '_', '-'), got "k8s io""#,
        ),
        (
            "[kubernetes]\nruntime_endpoint = \"tcp://10.0.0.1:10010\"",
            r#"[kubernetes] runtime_endpoint: expected a CRI runtime's unix socket (an absolute path or unix:///path), got "tcp://10.0.0.1:10010""#,
        ),
        (
            "[kubernetes]\ncontainerd_sock = \"/x\"",
            r#"[kubernetes]: unknown key "containerd_sock" (did you mean containerd_socket?)"#,
        ),
        (
            "kubernetes = 1",
            "kubernetes: expected a [kubernetes] table",
        ),
        (
            "[[ignore]]\npod_namespace = \"Shop\"",
            r#"pod_namespace: expected a Kubernetes namespace (a DNS label: a-z, 0-9, '-'), got "Shop""#,
        ),
        (
            "[[override]]\npod_name_prefix = \"\"\nidle_after = \"1h\"",
            r#"pod_name_prefix: expected the start of a pod name (a-z, 0-9, '-', '.'), got """#,
        ),
    ];
    for (text, expected) in cases {
        let message = file_error(text);
        assert!(message.contains(expected), "{text:?}: {message}");
    }
    let flag = RunArgs {
        containerd_socket: Some("c.sock".into()),
        ..RunArgs::default()
    };
    assert_eq!(
        resolve(&flag, "").unwrap_err().to_string(),
        r#"--containerd-socket: expected an absolute socket path, got "c.sock""#
    );
    let flag = RunArgs {
        runtime_endpoint: Some("unix://crio.sock".into()),
        ..RunArgs::default()
    };
    assert_eq!(
        resolve(&flag, "").unwrap_err().to_string(),
        r#"--runtime-endpoint: expected a CRI runtime's unix socket (an absolute path or unix:///path), got "unix://crio.sock""#
    );
}

#[test]
fn pod_keys_in_every_selecting_table() {
    let text = r#"
[[override]]
pod_namespace = "shop"
idle_after = "1h"

[[ignore]]
pod_name_prefix = "batch-"

[[enforce]]
name = "shop"
pod_namespace = "shop"
pod_name_prefix = "web-"
keepalive = { idle = "30s", interval = "10s", count = 3 }

[[remediate]]
reason = "peer_dead"
pod_namespace = "shop"
"#;
    let config = resolve(&RunArgs::default(), text).unwrap();
    let shop = Some("shop".to_owned());
    assert_eq!(config.policy.overrides[0].matcher.pod_namespace, shop);
    assert_eq!(
        config.policy.ignore[0].pod_name_prefix.as_deref(),
        Some("batch-")
    );
    let enforce = &config.enforce[0];
    assert_eq!(enforce.matcher.pod_namespace, shop);
    assert_eq!(enforce.matcher.pod_name_prefix.as_deref(), Some("web-"));
    assert!(
        enforce.needs_owner(),
        "decided at the scan, not at the handshake"
    );
    assert_eq!(config.remediate[0].matcher.pod_namespace, shop);
    let group_by = resolve(&RunArgs::default(), "group_by = \"pod\"").unwrap();
    assert_eq!(group_by.group_by, crate::model::GroupBy::Pod);
}
