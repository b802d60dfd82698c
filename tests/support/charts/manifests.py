"""Pure helpers over rendered Kubernetes manifests (lists of dicts): pod specs, the restricted
Pod Security checks, Ingress path routing and NetworkPolicy evaluation.

The Pod Security checks mirror k8s.io/pod-security-admission/policy (check_*.go) for the
"restricted" level, baseline checks included; the Ingress and NetworkPolicy evaluators follow
the networking.k8s.io/v1 API documentation. They let the tests assert behaviour ("can the
ingress controller reach the webhook?") instead of YAML shapes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

Manifest = dict[str, Any]

WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}
RESTRICTED_VOLUME_TYPES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}
BASELINE_CAPABILITIES = {
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
}
SAFE_SYSCTLS = {
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
}


def by_kind(objects: Iterable[Manifest], kind: str) -> list[Manifest]:
    return [o for o in objects if o.get("kind") == kind]


def named(objects: Iterable[Manifest], kind: str, name: str) -> Manifest:
    matches = [o for o in objects if o.get("kind") == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind}/{name}, found {len(matches)}"
    return matches[0]


def is_hook(obj: Manifest) -> bool:
    return "helm.sh/hook" in (obj.get("metadata", {}).get("annotations") or {})


@dataclass(frozen=True)
class PodTemplate:
    """A pod spec and the object it comes from (a workload's template or a bare Pod)."""

    owner: Manifest
    labels: dict[str, str]
    spec: dict[str, Any]

    @property
    def ref(self) -> str:
        return f"{self.owner['kind']}/{self.owner['metadata']['name']}"

    @property
    def long_running(self) -> bool:
        return self.owner["kind"] in {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet"}

    def containers(self) -> Iterator[dict[str, Any]]:
        for key in ("initContainers", "containers", "ephemeralContainers"):
            yield from self.spec.get(key) or []


def pod_templates(objects: Iterable[Manifest]) -> list[PodTemplate]:
    templates = []
    for obj in objects:
        kind = obj.get("kind")
        if kind == "Pod":
            templates.append(PodTemplate(obj, obj["metadata"].get("labels") or {}, obj["spec"]))
        elif kind in WORKLOAD_KINDS:
            template = obj["spec"]["template"]
            templates.append(PodTemplate(obj, template["metadata"].get("labels") or {}, template["spec"]))
        elif kind == "CronJob":
            template = obj["spec"]["jobTemplate"]["spec"]["template"]
            templates.append(PodTemplate(obj, template["metadata"].get("labels") or {}, template["spec"]))
    return templates


def restricted_violations(pod: PodTemplate) -> list[str]:
    """Everything the "restricted" Pod Security Standard (latest) would reject in this pod."""
    spec, problems = pod.spec, []
    pod_sc = spec.get("securityContext") or {}
    containers = list(pod.containers())

    # baseline
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(key):
            problems.append(f"{key}=true")
    for sysctl in pod_sc.get("sysctls") or []:
        if sysctl.get("name") not in SAFE_SYSCTLS:
            problems.append(f"unsafe sysctl {sysctl.get('name')}")
    for volume in spec.get("volumes") or []:
        volume_types = set(volume) - {"name"}
        if not volume_types <= RESTRICTED_VOLUME_TYPES:
            problems.append(f"volume {volume['name']} has type {sorted(volume_types)}")
    if (pod_sc.get("seccompProfile") or {}).get("type") == "Unconfined":
        problems.append("pod seccompProfile Unconfined")
    for c in containers:
        sc = c.get("securityContext") or {}
        name = c.get("name")
        if sc.get("privileged"):
            problems.append(f"{name}: privileged")
        if sc.get("procMount") not in (None, "Default"):
            problems.append(f"{name}: procMount {sc['procMount']}")
        for port in c.get("ports") or []:
            if port.get("hostPort"):
                problems.append(f"{name}: hostPort {port['hostPort']}")
        if (sc.get("seLinuxOptions") or {}).get("type") not in (
            None,
            "",
            "container_t",
            "container_init_t",
            "container_kvm_t",
            "container_engine_t",
        ):
            problems.append(f"{name}: seLinuxOptions.type")

        # restricted
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{name}: allowPrivilegeEscalation must be false")
        capabilities = sc.get("capabilities") or {}
        if "ALL" not in (capabilities.get("drop") or []):
            problems.append(f"{name}: capabilities must drop ALL")
        added = set(capabilities.get("add") or [])
        if added - {"NET_BIND_SERVICE"}:
            problems.append(f"{name}: adds capabilities {sorted(added - {'NET_BIND_SERVICE'})}")
        if added - BASELINE_CAPABILITIES:
            problems.append(f"{name}: adds non-baseline capabilities")
        run_as_non_root = sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot"))
        if run_as_non_root is not True:
            problems.append(f"{name}: runAsNonRoot must be true (pod or container)")
        if sc.get("runAsUser", pod_sc.get("runAsUser")) == 0:
            problems.append(f"{name}: runAsUser 0")
        seccomp = (sc.get("seccompProfile") or pod_sc.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            problems.append(f"{name}: seccompProfile must be RuntimeDefault or Localhost, is {seccomp}")
    if pod_sc.get("runAsUser") == 0:
        problems.append("pod runAsUser 0")
    return problems


def hardening_violations(pod: PodTemplate, *, probe_exempt: set[str] = frozenset()) -> list[str]:
    """Our own bar beyond Pod Security: read-only root, requests and limits, probes for
    long-running containers (readiness optional for names in probe_exempt)."""
    problems = []
    for c in pod.spec.get("containers") or []:
        name = c["name"]
        if (c.get("securityContext") or {}).get("readOnlyRootFilesystem") is not True:
            problems.append(f"{name}: readOnlyRootFilesystem must be true")
        resources = c.get("resources") or {}
        for section in ("requests", "limits"):
            for resource in ("cpu", "memory"):
                if resource not in (resources.get(section) or {}):
                    problems.append(f"{name}: resources.{section}.{resource} missing")
        if pod.long_running:
            if "livenessProbe" not in c:
                problems.append(f"{name}: livenessProbe missing")
            if "readinessProbe" not in c and name not in probe_exempt:
                problems.append(f"{name}: readinessProbe missing")
    return problems


# --- label selectors -------------------------------------------------------------------------


def selector_matches(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    """metav1.LabelSelector semantics; an empty selector matches everything."""
    selector = selector or {}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values") or []
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and labels.get(key) in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


# --- Ingress -----------------------------------------------------------------------------------


def _elements(path: str) -> list[str]:
    return [part for part in path.split("/") if part]


def _path_matches(path_type: str, rule_path: str, request_path: str) -> bool:
    if path_type == "Exact":
        return rule_path == request_path
    if path_type == "Prefix":  # element-wise: /api matches /api and /api/x, not /apix
        rule = _elements(rule_path)
        return _elements(request_path)[: len(rule)] == rule
    raise AssertionError(f"pathType {path_type} cannot be evaluated portably")


def ingress_backend(ingress: Manifest, host: str, request_path: str) -> str | None:
    """Service name the Ingress routes (host, path) to: the longest matching path wins, Exact
    before Prefix at equal length; None when nothing matches (the default backend)."""
    candidates = []
    for rule in ingress["spec"].get("rules") or []:
        if rule.get("host") not in (None, host):
            continue
        for entry in rule.get("http", {}).get("paths") or []:
            if _path_matches(entry["pathType"], entry["path"], request_path):
                exact = entry["pathType"] == "Exact"
                candidates.append((len(entry["path"].rstrip("/")), exact, entry["backend"]["service"]["name"]))
    if not candidates:
        return None
    return max(candidates, key=lambda c: (c[0], c[1]))[2]


# --- NetworkPolicy -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    """A pod (labels, namespace and its namespace's labels) or an outside address."""

    name: str
    labels: dict[str, str]
    namespace: str
    namespace_labels: dict[str, str]
    ip: str | None = None

    @staticmethod
    def pod(name: str, labels: dict[str, str], namespace: str) -> Endpoint:
        return Endpoint(name, labels, namespace, {"kubernetes.io/metadata.name": namespace})

    @staticmethod
    def outside(name: str, ip: str) -> Endpoint:
        return Endpoint(name, {}, "", {}, ip)


def _peer_matches(peer: dict[str, Any], other: Endpoint, policy_namespace: str) -> bool:
    if "ipBlock" in peer:
        import ipaddress

        if other.ip is None:
            return False  # pod-to-pod traffic: ipBlock is meant for cluster-external addresses
        block = peer["ipBlock"]
        address = ipaddress.ip_address(other.ip)
        return address in ipaddress.ip_network(block["cidr"]) and not any(
            address in ipaddress.ip_network(cidr) for cidr in block.get("except") or []
        )
    if other.ip is not None:
        return False
    if "namespaceSelector" in peer:
        if not selector_matches(peer["namespaceSelector"], other.namespace_labels):
            return False
    elif other.namespace != policy_namespace:
        return False
    return selector_matches(peer.get("podSelector"), other.labels)


def _port_matches(ports: list[dict[str, Any]] | None, port: int, protocol: str) -> bool:
    if not ports:
        return True
    for entry in ports:
        if entry.get("protocol", "TCP") != protocol:
            continue
        if "port" not in entry or entry["port"] == port or entry.get("endPort", -1) >= port >= entry["port"]:
            return True
    return False


def _rule_allows(
    rule: dict[str, Any], peers_key: str, other: Endpoint, port: int, protocol: str, namespace: str
) -> bool:
    peers = rule.get(peers_key)
    peer_ok = not peers or any(_peer_matches(peer, other, namespace) for peer in peers)
    return peer_ok and _port_matches(rule.get("ports"), port, protocol)


def _selecting(policies: list[Manifest], pod: Endpoint, direction: str) -> list[Manifest]:
    return [
        p
        for p in policies
        if p["metadata"].get("namespace", pod.namespace) == pod.namespace
        and direction in (p["spec"].get("policyTypes") or ["Ingress"])
        and selector_matches(p["spec"]["podSelector"], pod.labels)
    ]


def traffic_allowed(
    policies: list[Manifest], source: Endpoint, destination: Endpoint, port: int, protocol: str = "TCP"
) -> bool:
    """Whether NetworkPolicies let source open a connection to destination:port. Both the
    source's egress and the destination's ingress must allow it (a side no policy selects is
    open)."""
    if source.ip is None:
        egress = _selecting(policies, source, "Egress")
        if egress and not any(
            _rule_allows(rule, "to", destination, port, protocol, source.namespace)
            for p in egress
            for rule in p["spec"].get("egress") or []
        ):
            return False
    if destination.ip is None:
        ingress = _selecting(policies, destination, "Ingress")
        if ingress and not any(
            _rule_allows(rule, "from", source, port, protocol, destination.namespace)
            for p in ingress
            for rule in p["spec"].get("ingress") or []
        ):
            return False
    return True
