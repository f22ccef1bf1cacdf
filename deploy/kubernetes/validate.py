#!/usr/bin/env python3
"""Validates deploy/kubernetes/ and the Helm chart deploy/helm/tcp-liveness, offline.

- The chart is rendered by Helm's own engine (helm-python-sdk: Helm v4's Go SDK as a C library;
  no helm binary is installable from the registries this project uses) and linted.
- Every Kubernetes object, rendered or plain, is validated with kubernetes-validate (bundled
  OpenAPI schemas, strict: unknown fields fail) for the oldest and newest versions supported.
- PodMonitor is a CRD: kubernetes-validate has no schema for it, so it is checked against
  PODMONITOR_SCHEMA below, a hand-written subset of monitoring.coreos.com/v1 PodMonitor covering
  the fields this project uses (unknown fields fail there too).
- The chart rendered with values.yaml (PodMonitor on) must equal the plain manifests, once the
  labels and annotation only Helm adds are removed: the two copies cannot drift apart.
- Every DaemonSet, plain or rendered, gives the agent what it needs on a node (agent_pod_problems):
  hostPID and hostNetwork, the host's cgroup v2 hierarchy read-only at /sys/fs/cgroup, and for
  --containerd-socket / --web.config.file the host directory or Secret holding that file.
- Broken manifests must fail, so a validator that accepts everything is caught.

Needs: pip install kubernetes-validate helm-python-sdk (monitor/tests/deploy_manifests.rs
installs both). Exit 0 when everything holds; otherwise prints each problem and exits 1.
"""
import copy
import pathlib
import sys

import helm_python as helm
import jsonschema
import kubernetes_validate
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
PLAIN = ROOT / "deploy" / "kubernetes"
CHART = ROOT / "deploy" / "helm" / "tcp-liveness"
# appArmorProfile in securityContext is new in 1.30; 1.37 is the newest schema bundled.
KUBERNETES_VERSIONS = ["1.30.0", "1.37.0"]
RELEASE = {"name": "tcp-liveness", "namespace": "tcp-liveness"}
# What only Helm adds: these are removed before comparing the chart with the plain manifests.
HELM_ONLY_LABELS = ["app.kubernetes.io/managed-by", "helm.sh/chart"]
HELM_ONLY_ANNOTATIONS = ["checksum/config"]

DURATION = "^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"
STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
PODMONITOR_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "PodMonitor"},
        "metadata": {
            "type": "object",
            "required": ["name"],
            "additionalProperties": False,
            "properties": {
                "name": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
                "namespace": {"type": "string"},
                "labels": STRING_MAP,
                "annotations": STRING_MAP,
            },
        },
        "spec": {
            "type": "object",
            "required": ["selector", "podMetricsEndpoints"],
            "additionalProperties": False,
            "properties": {
                "selector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {"matchLabels": STRING_MAP},
                },
                "podMetricsEndpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "port": {"type": "string", "minLength": 1},
                            "path": {"type": "string", "pattern": "^/"},
                            "scheme": {"enum": ["http", "https", "HTTP", "HTTPS"]},
                            "interval": {"type": "string", "pattern": DURATION},
                            "scrapeTimeout": {"type": "string", "pattern": DURATION},
                        },
                    },
                },
            },
        },
    },
}


def problems_of(doc):
    """Validation problems of one object, as strings; none when it is valid."""
    if doc.get("kind") == "PodMonitor":
        validator = jsonschema.Draft7Validator(PODMONITOR_SCHEMA)
        return [f"PodMonitor: {e.json_path}: {e.message}" for e in validator.iter_errors(doc)]
    out = []
    for version in KUBERNETES_VERSIONS:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except Exception as e:  # ValidationError, SchemaNotFoundError: all are failures here
            out.append(f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')} ({version}): {e}")
    return out


def flag_value(args, flag):
    """The value of `--flag=VALUE` in a container's args; None when absent."""
    return next((a.split("=", 1)[1] for a in args if a.startswith(f"{flag}=")), None)


def mount_of(pod, container, path):
    """(volumeMount, volume) of the mount holding `path` in `container`; (None, None) if none."""
    mounts = [m for m in container.get("volumeMounts", [])
              if path == m["mountPath"] or path.startswith(m["mountPath"].rstrip("/") + "/")]
    if not mounts:
        return None, None
    mount = max(mounts, key=lambda m: len(m["mountPath"]))
    volume = next((v for v in pod.get("volumes", []) if v["name"] == mount["name"]), None)
    return mount, volume


def agent_pod_problems(ds, where):
    """What the agent's pod in DaemonSet `ds` lacks on a node, as strings (`where` names it)."""
    pod = ds["spec"]["template"]["spec"]
    agent = next(c for c in pod["containers"] if c["name"] == "tcp-liveness")
    args, out = agent.get("args", []), []
    for key in ("hostPID", "hostNetwork"):
        if pod.get(key) is not True:
            out.append(f"{where}: {key} is not true")
    # The sock_ops program is attached at /sys/fs/cgroup: the host's root, not the pod's cgroup.
    mount, volume = mount_of(pod, agent, "/sys/fs/cgroup")
    if not (mount and mount["mountPath"] == "/sys/fs/cgroup" and mount.get("readOnly")
            and (volume or {}).get("hostPath", {}).get("path") == "/sys/fs/cgroup"):
        out.append(f"{where}: the host's /sys/fs/cgroup is not mounted read-only at /sys/fs/cgroup")
    for flag in ("--containerd-socket", "--runtime-endpoint"):
        socket = flag_value(args, flag)
        if socket is None:
            continue
        mount, volume = mount_of(pod, agent, socket.removeprefix("unix://"))
        host = (volume or {}).get("hostPath", {}).get("path")
        if not (mount and mount.get("readOnly") and host == mount["mountPath"]):
            out.append(f"{where}: {flag}={socket} is not in a read-only hostPath "
                       "mount of the same directory")
    web = flag_value(args, "--web.config.file")
    if web is not None:
        mount, volume = mount_of(pod, agent, web)
        if not (mount and mount.get("readOnly") and "secret" in (volume or {})):
            out.append(f"{where}: --web.config.file={web} is not in a read-only Secret mount")
    return out


def daemonset(docs):
    return next(d for d in docs if d["kind"] == "DaemonSet")


def load_all(text):
    return [d for d in yaml.safe_load_all(text) if d]


def render(values):
    with helm.Chart.load(str(CHART)) as chart:
        rendered = chart.render(values, **RELEASE)
    docs = []
    for name in sorted(rendered):
        docs.extend(load_all(rendered[name]))
    return docs


def without_helm_metadata(doc):
    doc = copy.deepcopy(doc)
    for meta in (doc.get("metadata", {}), doc.get("spec", {}).get("template", {}).get("metadata", {})):
        for key, drop in (("labels", HELM_ONLY_LABELS), ("annotations", HELM_ONLY_ANNOTATIONS)):
            for name in drop:
                meta.get(key, {}).pop(name, None)
            if key in meta and not meta[key]:
                del meta[key]
    return doc


def differences(a, b, path=""):
    """(path, a's value, b's value) wherever two parsed documents differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(a.keys() | b.keys()):
            yield from differences(a.get(k), b.get(k), f"{path}.{k}")
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            yield from differences(x, y, f"{path}[{i}]")
    elif a != b:
        yield path, a, b


def by_kind(docs):
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def main():
    problems = []

    lint = helm.lint(str(CHART))
    # Severities: 1 info, 2 warning, 3 error. "icon is recommended" is info.
    problems += [f"helm lint: {m}" for m in lint["messages"] if m["severity"] >= 2]
    problems += [f"helm lint: {e}" for e in lint["errors"]]

    plain = []
    for path in sorted(PLAIN.glob("*.yaml")):
        plain.extend(load_all(path.read_text()))
    defaults = render({})
    with_podmonitor = render({"podMonitor": {"enabled": True}})
    # Every branch of the templates: values a user may set.
    custom = render({
        "podMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
        "port": 19977,
        "listenAddress": "[::]",
        "priorityClassName": "system-node-critical",
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "config": {"alertmanagerUrl": "http://alertmanager.monitoring:9093"},
        "image": {"tag": "0.1.1"},
        "appArmorProfile": "RuntimeDefault",
        "containerd": {"socketDir": "/run/k3s/containerd"},
        "webConfig": {"secretName": "tcp-liveness-web", "tls": True},
    })
    without_containerd = render({"containerd": {"enabled": False}})
    crio = render({"containerd": {"socketDir": "/run/crio", "socketName": "crio.sock",
                                  "cri": True}})
    for doc in plain + defaults + with_podmonitor + custom + without_containerd + crio:
        problems += problems_of(doc)

    # The agent's pod: every rendering, and what each option must change.
    renderings = {"deploy/kubernetes": plain, "values.yaml": defaults, "custom values": custom,
                  "containerd off": without_containerd, "CRI-O": crio}
    for where, docs in renderings.items():
        problems += agent_pod_problems(daemonset(docs), where)
    custom_ds = daemonset(custom)
    custom_args = custom_ds["spec"]["template"]["spec"]["containers"][0]["args"]
    if flag_value(custom_args, "--containerd-socket") != "/run/k3s/containerd/containerd.sock":
        problems.append(f"containerd.socketDir did not reach --containerd-socket: {custom_args}")
    if flag_value(custom_args, "--web.config.file") != "/etc/tcp-liveness/web/web-config.yml":
        problems.append(f"webConfig.secretName did not reach --web.config.file: {custom_args}")
    probe = custom_ds["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]
    if probe.get("scheme") != "HTTPS" or "scheme: https" not in str(yaml.safe_dump(custom)):
        problems.append("webConfig.tls did not make the probes and the PodMonitor use HTTPS")
    off_args = daemonset(without_containerd)["spec"]["template"]["spec"]["containers"][0]["args"]
    if flag_value(off_args, "--containerd-socket") is not None:
        problems.append("containerd.enabled=false still passes --containerd-socket")
    crio_args = daemonset(crio)["spec"]["template"]["spec"]["containers"][0]["args"]
    if (flag_value(crio_args, "--runtime-endpoint") != "unix:///run/crio/crio.sock"
            or flag_value(crio_args, "--containerd-socket") is not None):
        problems.append(f"containerd.cri=true did not pass --runtime-endpoint alone: {crio_args}")
    for where, docs in (("values.yaml", defaults), ("deploy/kubernetes", plain)):
        toml = next(d for d in docs if d["kind"] == "ConfigMap")["data"]["tcp-liveness.toml"]
        if 'group_by = "pod"' not in toml:
            problems.append(f"{where}: the config does not group by pod")

    kinds = sorted(d["kind"] for d in defaults)
    if kinds != ["ConfigMap", "DaemonSet", "Service"]:
        problems.append(f"values.yaml renders {kinds}, expected ConfigMap, DaemonSet, Service")
    if "alertmanager_url" not in str(custom) or "--listen=[::]:19977" not in str(custom):
        problems.append("custom values did not reach the rendered manifests")

    expected, got = by_kind(plain), by_kind(without_helm_metadata(d) for d in with_podmonitor)
    if expected.keys() != got.keys():
        problems.append(f"plain manifests {sorted(expected)} != chart {sorted(got)}")
    for key in sorted(expected.keys() & got.keys()):
        if expected[key] != got[key]:
            for path, want, have in differences(expected[key], got[key]):
                problems.append(f"{key[0]} {path}: deploy/kubernetes has {want!r}, the chart {have!r}")

    # The validators must reject what is wrong: a misspelt field, a bad type, a bad duration.
    ds = copy.deepcopy(expected[("DaemonSet", "tcp-liveness")])
    ds["spec"]["template"]["spec"]["hostPId"] = True
    cm = copy.deepcopy(expected[("ConfigMap", "tcp-liveness")])
    cm["data"]["tcp-liveness.toml"] = 42
    pm = copy.deepcopy(expected[("PodMonitor", "tcp-liveness")])
    pm["spec"]["podMetricsEndpoints"][0]["interval"] = "30 seconds"
    for broken in (ds, cm, pm):
        if not problems_of(broken):
            problems.append(f"validator accepted a broken {broken['kind']}")
    # ... and an agent pod without the host's cgroups, or with a socket outside its mounts.
    for change in ("cgroup", "socket"):
        ds = copy.deepcopy(expected[("DaemonSet", "tcp-liveness")])
        agent = ds["spec"]["template"]["spec"]["containers"][0]
        if change == "cgroup":
            agent["volumeMounts"] = [m for m in agent["volumeMounts"] if m["name"] != "cgroup"]
        else:
            agent["args"] = [a for a in agent["args"] if not a.startswith("--containerd-socket")]
            agent["args"].append("--containerd-socket=/var/run/other/containerd.sock")
        if not agent_pod_problems(ds, "broken"):
            problems.append(f"agent pod check accepted a DaemonSet with a bad {change}")

    for p in problems:
        print(f"FAIL {p}")
    checked = (len(plain) + len(defaults) + len(with_podmonitor) + len(custom)
               + len(without_containerd) + len(crio))
    print(f"{checked} manifests checked ({len(plain)} plain, {checked - len(plain)} rendered), "
          f"Helm {helm.helm_sdk_version()}, Kubernetes {' and '.join(KUBERNETES_VERSIONS)}: "
          f"{len(problems)} problems")
    print(f"agent pod: {len(renderings)} DaemonSets checked (hostPID, hostNetwork, host cgroups, "
          "runtime socket, web config)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
