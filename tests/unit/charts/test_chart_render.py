"""Offline tests of charts/imgproc: `helm lint --strict`, `helm template` over a matrix of values,
strict schema validation for Kubernetes 1.35, the restricted Pod Security Standard on every pod,
hardening, wiring between objects, Ingress routing and NetworkPolicy reachability."""

from __future__ import annotations

import base64
import functools
import json
import re
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from app.main import MULTIPART_OVERHEAD
from tests.support.charts.manifests import (
    Endpoint,
    by_kind,
    hardening_violations,
    ingress_backend,
    is_hook,
    named,
    pod_templates,
    restricted_violations,
    selector_matches,
    traffic_allowed,
)
from tests.support.charts.matrix import CASES
from tests.support.charts.release import (
    API,
    DNS,
    FLOWER,
    FULLNAME,
    INTERNAL_PATHS,
    KEDA_OPERATOR,
    OPERATOR,
    STRANGER,
    WEBHOOK_PROBES,
    WORKER,
    app_paths,
    env_of,
    release_pods,
)
from tests.support.charts.rendering import CHART, KUBE_VERSION, NAMESPACE, RELEASE, run_helm

MIGRATIONS, SMOKE = f"{FULLNAME}-migrations", f"{FULLNAME}-smoke-test"
# Custom resources: kubernetes_validate has no schema for them (the WorkerAutoscaler is checked
# against its CRD below, the HTTPRoute against the Gateway API's in test_chart_api_scaling, the
# Prometheus Operator's on the test apiserver;
# KEDA's are only known to KEDA).
CUSTOM_KINDS = {
    "WorkerAutoscaler",
    "ScaledObject",
    "TriggerAuthentication",
    "HTTPRoute",
    # The Prometheus Operator's: its CRDs check them on the test apiserver (tests/k8s/charts).
    "ServiceMonitor",
    "PodMonitor",
    "PrometheusRule",
}
CRD_FILE = CHART / "crds" / "workerautoscalers.yaml"
LABEL_KEYS = {
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/part-of",
    "app.kubernetes.io/managed-by",
    "helm.sh/chart",
}

case_names = pytest.mark.parametrize("case", list(CASES))


@pytest.fixture
def objects(render, case: str) -> list[dict[str, Any]]:
    return render(CASES[case].values)


def workload_name(pod) -> str:
    return pod.owner["metadata"]["name"]


# --- lint and validity ---------------------------------------------------------------------------


@case_names
def test_helm_lint_strict_passes(k8s_tools_bin, tmp_path, case):
    values_file = tmp_path / "values.json"
    values_file.write_text(json.dumps(CASES[case].values))
    result = run_helm(
        k8s_tools_bin,
        tmp_path,
        "lint",
        "--strict",
        str(CHART),
        "--namespace",
        NAMESPACE,
        "--kube-version",
        KUBE_VERSION,
        "--values",
        str(values_file),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[ERROR]" not in result.stdout and "[WARNING]" not in result.stdout, result.stdout


@functools.cache
def _kubernetes_validate(document: str) -> str | None:
    """Strict OpenAPI validation for the pinned Kubernetes version; None when valid. Cached
    on the object's JSON: most objects are identical across the matrix."""
    obj = json.loads(document)
    try:
        kubernetes_validate.validate(obj, KUBE_VERSION.rsplit(".", 1)[0], strict=True)
    except kubernetes_validate.ValidationError as error:
        return f"{obj['kind']}/{obj['metadata']['name']}: {error.message} at {list(error.path)}"
    return None


@functools.cache
def worker_autoscaler_schema() -> dict[str, Any]:
    crd = yaml.safe_load(CRD_FILE.read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1"]
    return version["schema"]["openAPIV3Schema"]


@case_names
def test_every_object_is_valid_for_kubernetes_1_35(objects):
    errors = [
        error
        for obj in objects
        if obj["kind"] not in CUSTOM_KINDS
        if (error := _kubernetes_validate(json.dumps(obj, sort_keys=True)))
    ]
    assert not errors, "\n".join(errors)
    unknown = {obj["kind"] for obj in objects} - CUSTOM_KINDS
    for kind in unknown:  # no kind slipped through as "custom" by accident
        assert kind[0].isupper()


@case_names
def test_worker_autoscaler_matches_its_crd_schema(objects):
    if not CRD_FILE.exists():
        pytest.skip("crds/workerautoscalers.yaml is not there yet")
    validator = jsonschema.Draft7Validator(worker_autoscaler_schema())
    for obj in by_kind(objects, "WorkerAutoscaler"):
        errors = [f"{list(e.path)}: {e.message}" for e in validator.iter_errors(obj)]
        assert not errors, errors
        spec = obj["spec"]  # the CEL rules of the CRD, evaluated by hand
        assert spec["minReplicaCount"] <= spec["maxReplicaCount"]
        assert spec["minReplicaCount"] <= spec["fallback"]["replicas"] <= spec["maxReplicaCount"]
        assert ("url" in spec["redis"]) != ("host" in spec["redis"])


# --- Pod Security and hardening ------------------------------------------------------------------


@case_names
def test_every_pod_meets_the_restricted_pod_security_standard(objects):
    pods = pod_templates(objects)
    assert pods
    problems = {pod.ref: v for pod in pods if (v := restricted_violations(pod))}
    assert not problems, problems


@case_names
def test_every_container_is_hardened(objects):
    problems = {}
    for pod in pod_templates(objects):
        # kopf's docs: readiness "makes no practical sense" for an operator (it serves nothing).
        if violations := hardening_violations(pod, probe_exempt={"operator"}):
            problems[pod.ref] = violations
    assert not problems, problems


@case_names
def test_only_the_operator_mounts_a_service_account_token(objects):
    # ...and its pre-delete hook, which runs as the operator to release the WorkerAutoscalers.
    operator_pods = (OPERATOR, f"{OPERATOR}-uninstall")
    for pod in pod_templates(objects):
        expected = workload_name(pod) in operator_pods
        assert pod.spec.get("automountServiceAccountToken") is expected, pod.ref
        if expected:
            assert pod.spec["serviceAccountName"] == OPERATOR, pod.ref


@case_names
def test_no_pod_gets_service_link_variables(objects):
    # Found on the real cluster: a Service named imgproc-flower made Kubernetes inject
    # IMGPROC_FLOWER_PORT=tcp://..., which the settings then refused (helm test crashed).
    for pod in pod_templates(objects):
        assert pod.spec.get("enableServiceLinks") is False, pod.ref


@case_names
def test_imgproc_pods_write_only_to_a_size_limited_tmp_and_the_shared_volume(objects):
    for pod in pod_templates(objects):
        if pod.labels.get("app.kubernetes.io/name") != "imgproc":
            continue
        volumes = {v["name"]: v for v in pod.spec["volumes"]}
        assert volumes["tmp"]["emptyDir"]["sizeLimit"], pod.ref
        for container in pod.spec["containers"]:
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            assert mounts.pop("/tmp") == "tmp", pod.ref
            if ca := mounts.pop("/etc/imgproc/s3-ca", None):  # the S3 endpoint's CA bundle, read-only
                assert "secret" in volumes[ca] and all(
                    m["readOnly"] for m in container["volumeMounts"] if m["name"] == ca
                ), pod.ref
            assert set(mounts) <= {"/data"}, pod.ref
            if mounts:
                assert "persistentVolumeClaim" in volumes[mounts["/data"]], pod.ref
            assert container["securityContext"]["runAsUser"] == 10001  # the Dockerfile's USER


def test_chart_runs_as_the_images_numeric_user(render):
    dockerfile = (CHART.parents[1] / "Dockerfile").read_text()
    assert "USER 10001:10001" in dockerfile
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["podSecurityContext"]["runAsUser"] == values["containerSecurityContext"]["runAsUser"] == 10001


# --- wiring between objects ----------------------------------------------------------------------


def _env_references(container: dict[str, Any]) -> list[tuple[str, str, str | None, bool]]:
    refs = []
    for source in container.get("envFrom") or []:
        for kind, key in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
            if key in source:
                refs.append((kind, source[key]["name"], None, source[key].get("optional", False)))
    for var in container.get("env") or []:
        value_from = var.get("valueFrom") or {}
        for kind, key in (("Secret", "secretKeyRef"), ("ConfigMap", "configMapKeyRef")):
            if key in value_from:
                ref = value_from[key]
                refs.append((kind, ref["name"], ref["key"], ref.get("optional", False)))
    return refs


@case_names
def test_every_reference_resolves(objects, case):
    """Secrets, ConfigMaps, claims and ServiceAccounts named by pods exist (in the release, or
    are the user's existing ones), with the keys that are read; Services, PDBs, policies and
    autoscalers select or target something that exists."""
    external = CASES[case].external
    index: dict[tuple[str, str], dict[str, Any]] = {(o["kind"], o["metadata"]["name"]): o for o in objects}
    problems = []

    def check(kind: str, name: str, key: str | None, optional: bool, where: str) -> None:
        if name in external.get(kind, set()):
            return
        obj = index.get((kind, name))
        if obj is None:
            if not optional:
                problems.append(f"{where}: {kind}/{name} is not rendered")
            return
        if key is not None and key not in (obj.get("data") or {}) | (obj.get("stringData") or {}):
            problems.append(f"{where}: {kind}/{name} has no key {key!r}")

    for pod in pod_templates(objects):
        claim_templates = {t["metadata"]["name"] for t in pod.owner["spec"].get("volumeClaimTemplates") or []}
        for container in pod.containers():
            for kind, name, key, optional in _env_references(container):
                check(kind, name, key, optional, f"{pod.ref}/{container['name']}")
            defined: set[str] = set()
            for var in container.get("env") or []:  # $(VAR) must be defined earlier in the list
                for used in re.findall(r"\$\(([A-Z0-9_]+)\)", var.get("value", "")):
                    if used not in defined:
                        problems.append(f"{pod.ref}: {var['name']} uses $({used}) before it is defined")
                defined.add(var["name"])
            mounted = {m["name"] for m in container.get("volumeMounts") or []}
            declared = {v["name"] for v in pod.spec.get("volumes") or []} | claim_templates
            if mounted - declared:
                problems.append(f"{pod.ref}: mounts undeclared volumes {mounted - declared}")
        for volume in pod.spec.get("volumes") or []:
            if "secret" in volume:
                check("Secret", volume["secret"]["secretName"], None, False, pod.ref)
            if "configMap" in volume:
                check("ConfigMap", volume["configMap"]["name"], None, False, pod.ref)
            if "persistentVolumeClaim" in volume:
                check("PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"], None, False, pod.ref)
        account = pod.spec.get("serviceAccountName", "default")
        if account != "default":
            check("ServiceAccount", account, None, False, pod.ref)

    pods = pod_templates(objects)

    def pod_labels(pod) -> list[dict[str, str]]:
        """The labels of the pods a template makes: a StatefulSet's controller adds each pod's
        name (statefulset.kubernetes.io/pod-name), which per-pod Services select on."""
        if pod.owner["kind"] != "StatefulSet":
            return [pod.labels]
        name = pod.owner["metadata"]["name"]
        return [
            {**pod.labels, "statefulset.kubernetes.io/pod-name": f"{name}-{i}"}
            for i in range(pod.owner["spec"].get("replicas", 1))
        ]

    for service in by_kind(objects, "Service"):
        selector = service["spec"]["selector"]
        matching = [
            p
            for p in pods
            if p.long_running and any(selector_matches({"matchLabels": selector}, labels) for labels in pod_labels(p))
        ]
        if not matching:
            problems.append(f"Service/{service['metadata']['name']} selects no pods")
        for port in service["spec"]["ports"]:
            target = port.get("targetPort")
            if isinstance(target, str) and not any(
                target == p.get("name") for m in matching for c in m.spec["containers"] for p in c.get("ports") or []
            ):
                problems.append(f"Service/{service['metadata']['name']}: no container port named {target}")
    for kind in ("PodDisruptionBudget", "NetworkPolicy"):
        for obj in by_kind(objects, kind):
            selector = obj["spec"].get("selector") or obj["spec"].get("podSelector")
            if obj["metadata"]["name"].endswith("default-deny"):
                continue
            if not any(selector_matches(selector, p.labels) for p in pods):
                problems.append(f"{kind}/{obj['metadata']['name']} selects no pods")
    for binding in by_kind(objects, "RoleBinding"):
        check("Role", binding["roleRef"]["name"], None, False, f"RoleBinding/{binding['metadata']['name']}")
        for subject in binding["subjects"]:
            check("ServiceAccount", subject["name"], None, False, f"RoleBinding/{binding['metadata']['name']}")
    for kind in ("WorkerAutoscaler", "ScaledObject"):
        for obj in by_kind(objects, kind):
            check("Deployment", obj["spec"]["scaleTargetRef"]["name"], None, False, f"{kind}/{obj['metadata']['name']}")
    for obj in by_kind(objects, "WorkerAutoscaler"):
        if ref := obj["spec"]["redis"].get("secretRef"):
            check("Secret", ref["name"], ref["key"], False, "WorkerAutoscaler")
    for obj in by_kind(objects, "TriggerAuthentication"):
        for ref in obj["spec"]["secretTargetRef"]:
            check("Secret", ref["name"], ref["key"], False, "TriggerAuthentication")
    for ingress in by_kind(objects, "Ingress"):
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                backend = path["backend"]["service"]
                service = index.get(("Service", backend["name"]))
                if service is None or backend["port"]["name"] not in {p["name"] for p in service["spec"]["ports"]}:
                    problems.append(f"Ingress path {path['path']} -> {backend} does not resolve")
    assert not problems, "\n".join(problems)


@case_names
def test_every_object_carries_the_standard_labels(objects):
    for obj in objects:
        labels = obj["metadata"].get("labels") or {}
        assert set(labels) >= LABEL_KEYS, f"{obj['kind']}/{obj['metadata']['name']} lacks {LABEL_KEYS - set(labels)}"
        assert labels["app.kubernetes.io/instance"] == RELEASE
        assert labels["app.kubernetes.io/part-of"] == "imgproc"
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
    for pod in pod_templates(objects):
        assert "app.kubernetes.io/component" in pod.labels, pod.ref
        selector = pod.owner["spec"].get("selector", {}).get("matchLabels", {})
        assert selector.items() <= pod.labels.items(), pod.ref
        # Selectors are immutable: nothing that changes between releases may be in them.
        assert not {"app.kubernetes.io/version", "helm.sh/chart"} & set(selector), pod.ref


# --- components ----------------------------------------------------------------------------------


def test_default_rendering_has_every_component(render):
    objects = render({})
    kinds = {(o["kind"], o["metadata"]["name"]) for o in objects}
    for name in (API, WORKER, FLOWER, OPERATOR):
        assert ("Deployment", name) in kinds
    assert {("StatefulSet", "rel-postgresql"), ("StatefulSet", "rel-redis-master")} <= kinds
    assert {("Service", API), ("Service", FLOWER), ("Service", f"{OPERATOR}-metrics")} <= kinds
    assert ("PodDisruptionBudget", API) in kinds
    assert ("Job", MIGRATIONS) in kinds and ("Pod", SMOKE) in kinds
    assert not by_kind(objects, "Ingress"), "the Ingress is opt-in"
    for kind in ("ClusterRole", "ClusterRoleBinding", "HorizontalPodAutoscaler"):
        assert not by_kind(objects, kind)


def test_api_runs_behind_a_cluster_ip_service_and_stays_in_it_through_a_dependency_outage(render):
    objects = render({})
    service = named(objects, "Service", API)
    assert service["spec"]["type"] == "ClusterIP" and service["spec"]["ports"][0]["port"] == 8000
    deployment = named(objects, "Deployment", API)
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["api"]
    # Not /readyz: every replica shares the database, broker and store, so their outage would
    # empty the Service and the ingress would answer 404 instead of the app's 503 + Retry-After.
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert container["readinessProbe"]["httpGet"]["path"] == "/livez"
    grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    pre_stop = int(container["lifecycle"]["preStop"]["exec"]["command"][1])
    assert grace > pre_stop + 20  # `imgproc api`: uvicorn timeout_graceful_shutdown=20
    pdb = named(objects, "PodDisruptionBudget", API)
    assert pdb["spec"]["maxUnavailable"] == 1


def test_configuration_reaches_every_component(render):
    objects = render({})
    config = named(objects, "ConfigMap", FULLNAME)["data"]
    assert config["IMGPROC_API_INTERNAL_URL"] == f"http://{API}:8000"
    assert config["IMGPROC_STORAGE_DIR"] == "/data"
    assert config["IMGPROC_WORKER_HEARTBEAT_FILE"].startswith("/tmp/")
    assert config["IMGPROC_DATA_DIR"].startswith("/tmp/")
    assert config["IMGPROC_LOG_FORMAT"] == "json"
    assert config["IMGPROC_QUEUE_NAME"] == "imgproc"
    assert json.loads(config["IMGPROC_CORS_ORIGINS"]) == []
    assert int(config["IMGPROC_TASK_TIME_LIMIT"]) == 90 and int(config["IMGPROC_TASK_SOFT_TIME_LIMIT"]) == 60
    assert config["IMGPROC_HOST"] == "0.0.0.0" and config["IMGPROC_PORT"] == "8000"
    for name in (API, WORKER, FLOWER, OPERATOR):
        (container,) = named(objects, "Deployment", name)["spec"]["template"]["spec"]["containers"]
        assert {"configMapRef": {"name": FULLNAME}} in container["envFrom"], name


def test_trusted_proxies_are_the_ingress_controllers_by_value_and_none_by_default(render):
    # Unset, the app believes no forwarding header (app.core.config); the chart passes only a list given.
    assert "IMGPROC_TRUSTED_PROXIES" not in named(render({}), "ConfigMap", FULLNAME)["data"]
    objects = render({"config": {"trustedProxies": ["10.244.0.0/16", "10.0.0.5"]}})
    config = named(objects, "ConfigMap", FULLNAME)["data"]
    assert json.loads(config["IMGPROC_TRUSTED_PROXIES"]) == ["10.244.0.0/16", "10.0.0.5"]


def test_api_and_worker_share_the_webhook_secret_and_storage(render):
    objects = render({})
    containers = {
        name: named(objects, "Deployment", name)["spec"]["template"]["spec"]["containers"][0] for name in (API, WORKER)
    }
    for container in containers.values():
        assert env_of(container)["IMGPROC_WEBHOOK_SECRET"] == {
            "secretKeyRef": {"name": FULLNAME, "key": "webhook-secret"}
        }
    volumes = [named(objects, "Deployment", n)["spec"]["template"]["spec"]["volumes"] for n in (API, WORKER)]
    claims = {v["persistentVolumeClaim"]["claimName"] for vs in volumes for v in vs if "persistentVolumeClaim" in v}
    assert claims == {f"{FULLNAME}-storage"}
    pvc = named(objects, "PersistentVolumeClaim", f"{FULLNAME}-storage")
    assert pvc["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    rwx = render({"persistence": {"accessModes": ["ReadWriteMany"], "storageClass": "nfs"}})
    pvc = named(rwx, "PersistentVolumeClaim", f"{FULLNAME}-storage")
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"] and pvc["spec"]["storageClassName"] == "nfs"
    existing = render(CASES["bare"].values)
    assert not by_kind(existing, "PersistentVolumeClaim")
    assert named(objects, "ConfigMap", FULLNAME)["data"]["IMGPROC_STORAGE_BACKEND"] == "filesystem"


S3_CASES = ["s3-external", "s3-aws-workload-identity", "object-store", "object-store-exposed", "kind-s3"]


@pytest.mark.parametrize("case", S3_CASES)
def test_with_s3_no_shared_claim_exists_and_api_and_workers_mount_no_shared_volume(render, case):
    objects = render(CASES[case].values)
    claims = {o["metadata"]["name"] for o in by_kind(objects, "PersistentVolumeClaim")}
    bundled = bool(CASES[case].values.get("objectStore", {}).get("enabled"))
    assert claims == ({f"{FULLNAME}-object-store"} if bundled else set())
    for name in (API, WORKER):
        spec = named(objects, "Deployment", name)["spec"]["template"]["spec"]
        assert not [v for v in spec["volumes"] if "persistentVolumeClaim" in v], name
        for container in spec["containers"] + spec.get("initContainers", []):
            assert "/data" not in {m["mountPath"] for m in container.get("volumeMounts") or []}, name
    config = named(objects, "ConfigMap", FULLNAME)["data"]
    assert config["IMGPROC_STORAGE_BACKEND"] == "s3" and "IMGPROC_STORAGE_DIR" not in config


def test_an_external_bucket_is_wired_into_api_and_workers(render):
    objects = render(CASES["s3-external"].values)
    config = named(objects, "ConfigMap", FULLNAME)["data"]
    assert {k: v for k, v in config.items() if k.startswith("IMGPROC_S3_")} == {
        "IMGPROC_S3_ENDPOINT_URL": "https://s3.example.com:9443",
        "IMGPROC_S3_PUBLIC_ENDPOINT_URL": "https://files.example.com",
        "IMGPROC_S3_BUCKET": "imgproc-data",
        "IMGPROC_S3_REGION": "eu-west-1",
        "IMGPROC_S3_PREFIX": "prod",
        "IMGPROC_S3_FORCE_PATH_STYLE": "true",
        "IMGPROC_S3_CA_BUNDLE": "/etc/imgproc/s3-ca/ca.pem",
        "IMGPROC_S3_SIGNED_URLS": "true",
        "IMGPROC_S3_SIGNED_URL_SECONDS": "120",
    }
    for name in (API, WORKER):
        spec = named(objects, "Deployment", name)["spec"]["template"]["spec"]
        env = env_of(spec["containers"][0])
        # The standard AWS chain, from the user's Secret under the key names they chose.
        assert env["AWS_ACCESS_KEY_ID"] == {"secretKeyRef": {"name": "s3-credentials", "key": "access-key"}}
        assert env["AWS_SECRET_ACCESS_KEY"] == {"secretKeyRef": {"name": "s3-credentials", "key": "secret-key"}}
        (ca,) = [v for v in spec["volumes"] if v["name"] == "s3-ca"]
        assert ca["secret"] == {"secretName": "s3-ca", "items": [{"key": "ca.pem", "path": "ca.pem"}]}
    for name in (FLOWER, OPERATOR):  # they never touch storage
        assert "AWS_ACCESS_KEY_ID" not in env_of(
            named(objects, "Deployment", name)["spec"]["template"]["spec"]["containers"][0]
        )


def test_aws_with_workload_identity_sets_no_keys_and_may_spread_over_nodes(render):
    objects = render(CASES["s3-aws-workload-identity"].values)
    config = named(objects, "ConfigMap", FULLNAME)["data"]
    assert "IMGPROC_S3_ENDPOINT_URL" not in config  # AWS, virtual-hosted addressing by default
    assert "IMGPROC_S3_FORCE_PATH_STYLE" not in config
    api = named(objects, "Deployment", API)["spec"]["template"]["spec"]
    assert not [v for v in api["containers"][0].get("env", []) if v["name"].startswith("AWS_")]
    assert api["topologySpreadConstraints"][0]["topologyKey"] == "kubernetes.io/hostname"
    account = named(objects, "ServiceAccount", FULLNAME)
    assert account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].endswith(":role/imgproc")


def test_the_bundled_object_store_creates_its_bucket_and_credentials_and_wires_itself(render):
    objects = render(CASES["object-store"].values)
    store = f"{FULLNAME}-object-store"
    config = named(objects, "ConfigMap", FULLNAME)["data"]
    assert config["IMGPROC_S3_ENDPOINT_URL"] == f"http://{store}:7070"
    assert config["IMGPROC_S3_BUCKET"] == "imgproc"
    # Browsers cannot reach the store: results go through the API.
    assert config["IMGPROC_S3_SIGNED_URLS"] == "false"
    secret = named(objects, "Secret", store)
    assert set(secret["data"]) == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    assert len(base64.b64decode(secret["data"]["AWS_SECRET_ACCESS_KEY"])) == 40
    deployment = named(objects, "Deployment", store)
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"] == {"type": "Recreate"}
    spec = deployment["spec"]["template"]["spec"]
    (gateway,) = spec["containers"]
    assert gateway["image"] == "ghcr.io/versity/versitygw:v1.8.0"
    assert gateway["args"] == ["posix", "/data"]
    env = env_of(gateway)
    assert env["ROOT_ACCESS_KEY_ID"] == {"secretKeyRef": {"name": store, "key": "AWS_ACCESS_KEY_ID"}}
    assert env["ROOT_SECRET_ACCESS_KEY"] == {"secretKeyRef": {"name": store, "key": "AWS_SECRET_ACCESS_KEY"}}
    (bucket,) = spec["initContainers"]
    assert bucket["command"][-1] == "/data/imgproc"  # the bucket: a top-level directory of the backend
    (data,) = [v for v in spec["volumes"] if v["name"] == "data"]
    assert data["persistentVolumeClaim"]["claimName"] == store
    pvc = named(objects, "PersistentVolumeClaim", store)
    assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert pvc["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    for name in (API, WORKER):
        env = env_of(named(objects, "Deployment", name)["spec"]["template"]["spec"]["containers"][0])
        assert env["AWS_ACCESS_KEY_ID"] == {"secretKeyRef": {"name": store, "key": "AWS_ACCESS_KEY_ID"}}
    service = named(objects, "Service", store)
    assert service["spec"]["ports"] == [{"name": "s3", "port": 7070, "targetPort": "s3", "protocol": "TCP"}]
    exposed = render(CASES["object-store-exposed"].values)
    assert named(exposed, "ConfigMap", FULLNAME)["data"]["IMGPROC_S3_SIGNED_URLS"] == "true"
    assert not [o for o in by_kind(exposed, "Secret") if o["metadata"]["name"] == store]  # existingSecret


def test_notes_warn_about_a_read_write_once_claim_shared_by_several_replicas(notes):
    warning = "WARNING: storage.backend=filesystem with a ReadWriteOnce claim"
    assert warning in notes({})  # the defaults: 2 API replicas on one RWO claim
    assert warning in notes({"api": {"replicaCount": 1}})  # the autoscaler may add workers
    assert warning not in notes({"api": {"replicaCount": 1}, "autoscaler": {"enabled": False}})
    assert warning not in notes({"persistence": {"accessModes": ["ReadWriteMany"]}})
    assert warning not in notes(CASES["bare"].values)  # an existing claim: its modes are unknown here
    for case in S3_CASES:
        text = notes(CASES[case].values)
        assert warning not in text and "mount\nno shared volume" in text, case
    assert "Results are streamed through the API" in notes(CASES["object-store"].values)
    assert "Results are streamed through the API" not in notes(CASES["object-store-exposed"].values)


@pytest.mark.parametrize(
    ("case", "database_url", "broker_url"),
    [
        (
            "defaults",
            "postgresql+psycopg2://imgproc:$(DATABASE_PASSWORD)@rel-postgresql:5432/imgproc",
            "redis://:$(REDIS_PASSWORD)@rel-redis:6379/0",
        ),
        (
            "external-hosts-existing-secrets",
            "postgresql+psycopg2://app:$(DATABASE_PASSWORD)@db.example.com:5432/images",
            "redis://:$(REDIS_PASSWORD)@redis.example.com:6379/1",
        ),
        (
            "external-urls",
            {"secretKeyRef": {"name": f"{FULLNAME}-external", "key": "database-url"}},
            {"secretKeyRef": {"name": f"{FULLNAME}-external", "key": "redis-url"}},
        ),
    ],
)
def test_database_and_broker_urls_never_hold_a_password_in_the_pod_spec(render, case, database_url, broker_url):
    objects = render(CASES[case].values)
    for name in (API, WORKER):
        env = env_of(named(objects, "Deployment", name)["spec"]["template"]["spec"]["containers"][0])
        assert env["IMGPROC_DATABASE_URL"] == database_url
        assert env["IMGPROC_BROKER_URL"] == broker_url
    rendered = json.dumps([o for o in objects if o["kind"] != "Secret"])
    for password in ("s3cret", "br0ker"):
        assert password not in rendered


def test_external_credentials_secret_holds_exactly_the_values_given(render):
    import base64

    secret = named(render(CASES["external-urls"].values), "Secret", f"{FULLNAME}-external")
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert data == {
        "database-url": CASES["external-urls"].values["externalDatabase"]["url"],
        "redis-url": CASES["external-urls"].values["externalRedis"]["url"],
        "redis-password": "br0ker",
    }
    assert not any(
        o["metadata"]["name"] == f"{FULLNAME}-external" for o in render(CASES["external-hosts-existing-secrets"].values)
    )


def test_worker_has_fixed_concurrency_heartbeat_probes_and_a_grace_period_beyond_the_task_limit(render):
    objects = render({})
    config = named(objects, "ConfigMap", FULLNAME)["data"]
    spec = named(objects, "Deployment", WORKER)["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    assert container["args"] == ["worker"]
    assert config["IMGPROC_WORKER_CONCURRENCY"] == "2"
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["exec"]["command"] == ["imgproc", "worker-probe", "--max-age", "60"]
    assert spec["terminationGracePeriodSeconds"] > int(config["IMGPROC_TASK_TIME_LIMIT"])
    assert int(config["IMGPROC_VISIBILITY_TIMEOUT"]) > int(config["IMGPROC_TASK_TIME_LIMIT"])


@pytest.mark.parametrize(("case", "scaler"), [("defaults", "operator"), ("keda", "keda"), ("autoscaler-off", None)])
def test_worker_replicas_belong_to_exactly_one_owner(render, case, scaler):
    objects = render(CASES[case].values)
    worker = named(objects, "Deployment", WORKER)
    if scaler is None:
        assert worker["spec"]["replicas"] == 3
    else:
        assert "replicas" not in worker["spec"], "helm would reset the autoscaler's count on every upgrade"
    assert bool(by_kind(objects, "WorkerAutoscaler")) == (scaler == "operator")
    assert bool(by_kind(objects, "ScaledObject")) == (scaler == "keda")
    operator_objects = [o for o in objects if o["metadata"]["name"].startswith(OPERATOR)]
    assert bool(operator_objects) == (scaler == "operator")


def test_flower_is_optional_and_protected_by_basic_auth(render):
    objects = render({})
    (container,) = named(objects, "Deployment", FLOWER)["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["flower"]
    assert env_of(container)["IMGPROC_FLOWER_BASIC_AUTH"] == {
        "secretKeyRef": {"name": FULLNAME, "key": "flower-basic-auth"}
    }
    assert "IMGPROC_DATABASE_URL" not in env_of(container)
    config = named(objects, "ConfigMap", FULLNAME)["data"]
    assert config["IMGPROC_FLOWER_URL_PREFIX"] == "flower" and config["IMGPROC_FLOWER_PORT"] == "5555"
    off = render(CASES["ingress-flower-off"].values)
    assert not [o for o in off if o["metadata"]["name"].startswith(FLOWER)]
    assert "flower-basic-auth" not in named(off, "Secret", FULLNAME)["data"]


def test_generated_secrets_are_long_random_and_the_database_ones_survive_uninstall(render):
    import base64

    objects = render({})
    app = named(objects, "Secret", FULLNAME)["data"]
    assert len(base64.b64decode(app["webhook-secret"])) >= 24
    user, password = base64.b64decode(app["flower-basic-auth"]).decode().split(":", 1)
    assert user == "admin" and len(password) >= 24
    for name, keys in (
        ("rel-postgresql", {"postgres-password", "password", "replication-password"}),
        ("rel-redis", {"password"}),
    ):
        secret = named(objects, "Secret", name)
        assert set(secret["data"]) == keys
        assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert not any(
        o["metadata"]["name"] == FULLNAME and o["kind"] == "Secret" for o in render(CASES["app-existing-secret"].values)
    )


# --- migrations hook -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "creates_schema"),
    [
        ("defaults", True),
        ("bare", True),
        ("external-urls", False),
        ("external-hosts-existing-secrets", False),
    ],
)
def test_api_pods_make_the_first_schema_only_with_the_bundled_database(render, case, creates_schema):
    # The post-install Job runs only after `helm install --wait` saw ready pods: waiting for it
    # from an init container would never end. An external database is migrated before the pods.
    api = named(render(CASES[case].values), "Deployment", f"{FULLNAME}-api")
    (init,) = api["spec"]["template"]["spec"]["initContainers"]
    assert init["args"][0] == "migrate" and "--wait" in init["args"]
    assert ("--check" not in init["args"]) == creates_schema


@pytest.mark.parametrize(
    ("case", "phases", "service_account"),
    [
        ("defaults", "post-install,pre-upgrade", FULLNAME),
        ("external-urls", "pre-install,pre-upgrade", "default"),
        ("external-hosts-existing-secrets", "pre-install,pre-upgrade", "default"),
        ("bare", "post-install,pre-upgrade", "default"),
    ],
)
def test_migrations_run_as_a_hook_job_that_can_start_before_the_release_objects_exist(
    render, case, phases, service_account
):
    objects = render(CASES[case].values)
    job = named(objects, "Job", MIGRATIONS)
    annotations = job["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == phases
    assert annotations["helm.sh/hook-delete-policy"] == "before-hook-creation,hook-succeeded"
    assert job["spec"]["backoffLimit"] >= 3
    spec = job["spec"]["template"]["spec"]
    assert spec["restartPolicy"] == "Never"
    assert spec["serviceAccountName"] == service_account
    (container,) = spec["containers"]
    assert container["args"][:2] == ["migrate", "--wait"] and int(container["args"][2]) > 0
    assert "envFrom" not in container, "the ConfigMap does not exist yet at pre-install"
    if phases.startswith("pre-install"):
        # Every Secret the Job reads must exist before the release: the user's or a hook.
        for var in container["env"]:
            ref = (var.get("valueFrom") or {}).get("secretKeyRef")
            if ref is None or ref.get("optional"):
                continue
            source = next((o for o in objects if o["kind"] == "Secret" and o["metadata"]["name"] == ref["name"]), None)
            if source is None:
                assert ref["name"] in CASES[case].external.get("Secret", set())
            else:
                assert is_hook(source) and source["metadata"]["annotations"]["helm.sh/hook"] == phases
                assert int(source["metadata"]["annotations"]["helm.sh/hook-weight"]) < 0


# --- Ingress -------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["ingress", "ingress-flower-off", "kind"])
def test_ingress_never_routes_the_webhook_to_the_api(render, case):
    objects = render(CASES[case].values)
    (ingress,) = by_kind(objects, "Ingress")
    host = ingress["spec"]["rules"][0].get("host", "any.example")
    for path in [*WEBHOOK_PROBES, *(p for p in app_paths() if p.startswith("/api/webhook"))]:
        backend = ingress_backend(ingress, host, path)
        assert backend != API, f"{path} reaches the API through the Ingress"
        if backend is not None:
            # The sink: the API pods (so it has endpoints: Traefik drops routes without any and
            # the path would fall through to /api), on a port nothing listens on.
            sink = named(objects, "Service", backend)["spec"]
            selector = {"matchLabels": sink["selector"]}
            api_pods = [p for p in pod_templates(objects) if selector_matches(selector, p.labels)]
            assert api_pods, backend
            listening = {
                port["containerPort"] for pod in api_pods for c in pod.containers() for port in c.get("ports", [])
            }
            assert {port["targetPort"] for port in sink["ports"]}.isdisjoint(listening), sink


@pytest.mark.parametrize("case", ["ingress", "kind"])
def test_ingress_routes_every_public_path(render, case):
    objects = render(CASES[case].values)
    (ingress,) = by_kind(objects, "Ingress")
    host = ingress["spec"]["rules"][0].get("host", "any.example")
    public = [p for p in app_paths() if not p.startswith("/api/webhook") and p not in INTERNAL_PATHS]
    for path in [*public, "/", "/docs", "/openapi.json", "/frontend", "/frontend/", "/frontend/app.js"]:
        assert ingress_backend(ingress, host, path) == API, path
    assert ingress_backend(ingress, host, "/flower/") == FLOWER
    assert ingress_backend(ingress, host, "/flower/api/workers") == FLOWER
    for path in INTERNAL_PATHS:
        assert ingress_backend(ingress, host, path) is None, f"{path} is internal"
    assert ingress_backend(ingress, "other.example", "/") in (None, API)


def test_ingress_settings(render):
    objects = render(CASES["ingress"].values)
    (ingress,) = by_kind(objects, "Ingress")
    assert ingress["spec"]["ingressClassName"] == "nginx"
    assert ingress["spec"]["tls"] == [{"secretName": "imgproc-tls", "hosts": ["imgproc.example.com"]}]
    body_size = ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-body-size"]
    config = named(objects, "ConfigMap", FULLNAME)["data"]
    assert config["IMGPROC_MAX_UPLOAD_BYTES"] == "20971520"
    assert int(config["IMGPROC_KEEP_ALIVE_SECONDS"]) > 90  # above Traefik's idle timeout for its pool
    assert int(body_size) == 20971520 + MULTIPART_OVERHEAD
    custom = render(
        {
            "ingress": {
                "enabled": True,
                "annotations": {"nginx.ingress.kubernetes.io/proxy-body-size": "50m", "a": "b"},
            },
            "config": {"maxUploadBytes": 1000},
        }
    )
    annotations = by_kind(custom, "Ingress")[0]["metadata"]["annotations"]
    assert annotations == {"nginx.ingress.kubernetes.io/proxy-body-size": "50m", "a": "b"}
    assert "/flower" not in json.dumps(by_kind(render(CASES["ingress-flower-off"].values), "Ingress"))


# --- NetworkPolicy -------------------------------------------------------------------------------

INGRESS_CONTROLLER = Endpoint.pod("ingress-controller", {"app.kubernetes.io/name": "ingress-nginx"}, "ingress-nginx")
# A worker of a same-named release in another namespace: labels match, namespace does not.
OTHER_NAMESPACE = Endpoint.pod(
    "elsewhere",
    {
        "app.kubernetes.io/name": "imgproc",
        "app.kubernetes.io/component": "worker",
        "app.kubernetes.io/instance": RELEASE,
    },
    "other",
)
API_SERVER = Endpoint.outside("kube-apiserver", "172.18.0.2")
EXTERNAL_DB = Endpoint.outside("external-db", "203.0.113.10")


@pytest.mark.parametrize("case", [c for c in CASES if CASES[c].values.get("networkPolicy", {}).get("enabled", True)])
def test_only_workers_the_ingress_controller_and_the_smoke_test_reach_the_api(render, case):
    objects = render(CASES[case].values)
    policies = by_kind(objects, "NetworkPolicy")
    pods = release_pods(objects)
    candidates = [*pods.values(), INGRESS_CONTROLLER, STRANGER, OTHER_NAMESPACE, API_SERVER]
    allowed = {c.name for c in candidates if traffic_allowed(policies, c, pods["api"], 8000)}
    assert allowed == {"worker", "smoke-test", "ingress-controller"}


def test_network_policies_allow_exactly_the_documented_flows(render):
    objects = render(CASES["redis-replicas"].values)
    policies = by_kind(objects, "NetworkPolicy")
    pods = release_pods(objects)
    assert set(pods) == {
        "api",
        "worker",
        "flower",
        "operator",
        "operator-uninstall",
        "migrations",
        "smoke-test",
        "postgresql-primary",
        "redis-master",
        "redis-replica",
    }
    allowed = {
        ("api", "postgresql-primary", 5432),
        ("api", "redis-master", 6379),
        ("worker", "postgresql-primary", 5432),
        ("worker", "redis-master", 6379),
        ("worker", "api", 8000),
        ("migrations", "postgresql-primary", 5432),
        ("flower", "redis-master", 6379),
        ("operator", "redis-master", 6379),
        ("redis-replica", "redis-master", 6379),
        ("smoke-test", "api", 8000),
    }
    ports = {
        "api": [8000],
        "flower": [5555],
        "operator": [8080, 9100],
        "postgresql-primary": [5432],
        "redis-master": [6379],
        "redis-replica": [6379],
        "worker": [],
        "migrations": [],
        "smoke-test": [],
        "operator-uninstall": [],
    }
    for source in pods.values():
        for destination in pods.values():
            for port in ports[destination.name]:
                expected = (source.name, destination.name, port) in allowed
                flow = (source.name, destination.name, port)
                assert traffic_allowed(policies, source, destination, port) == expected, flow
    # From outside the release: the ingress controller reaches the API and Flower only.
    for destination in pods.values():
        for port in ports[destination.name]:
            expected = destination.name in ("api", "flower")
            flow = (destination.name, port)
            assert traffic_allowed(policies, INGRESS_CONTROLLER, destination, port) == expected, flow
            assert not traffic_allowed(policies, STRANGER, destination, port), (destination.name, port)
    # Egress beyond the release: DNS for everyone, the Kubernetes API for the operator (and its
    # pre-delete hook) only.
    for source in pods.values():
        if source.name != "redis-master" and source.name != "postgresql-primary":
            assert traffic_allowed(policies, source, DNS, 53, "UDP"), source.name
        expected = source.name in ("operator", "operator-uninstall")
        assert traffic_allowed(policies, source, API_SERVER, 6443) == expected, source.name
        assert not traffic_allowed(policies, source, EXTERNAL_DB, 5432), source.name


def test_network_policies_follow_an_external_database_and_broker(render):
    objects = render(CASES["external-hosts-existing-secrets"].values)
    policies = by_kind(objects, "NetworkPolicy")
    pods = release_pods(objects)
    for name in ("api", "worker", "migrations"):
        assert traffic_allowed(policies, pods[name], EXTERNAL_DB, 5432), name
    for name in ("api", "worker", "flower", "operator"):
        assert traffic_allowed(policies, pods[name], Endpoint.outside("redis", "203.0.113.11"), 6379), name
    assert not traffic_allowed(policies, pods["flower"], EXTERNAL_DB, 5432)
    assert not traffic_allowed(policies, pods["smoke-test"], EXTERNAL_DB, 5432)


def test_only_api_and_workers_reach_the_bundled_object_store(render):
    objects = render(CASES["object-store"].values)
    policies = by_kind(objects, "NetworkPolicy")
    pods = release_pods(objects)
    store = pods["object-store"]
    candidates = [*pods.values(), INGRESS_CONTROLLER, STRANGER, OTHER_NAMESPACE]
    assert {c.name for c in candidates if traffic_allowed(policies, c, store, 7070)} == {"api", "worker"}
    for destination in [*pods.values(), DNS, API_SERVER, EXTERNAL_DB]:  # the store itself talks to no one
        for port in (53, 5432, 6379, 8000, 443):
            assert not traffic_allowed(policies, store, destination, port, "UDP" if port == 53 else "TCP")
    # Exposed for signed URLs (storage.s3.publicEndpoint): the ingress controller as well.
    exposed = render(CASES["object-store-exposed"].values)
    allowed = {
        c.name
        for c in [*release_pods(exposed).values(), INGRESS_CONTROLLER, STRANGER]
        if traffic_allowed(by_kind(exposed, "NetworkPolicy"), c, release_pods(exposed)["object-store"], 7070)
    }
    assert allowed == {"api", "worker", "ingress-controller"}


def test_an_external_object_store_is_reachable_by_api_and_workers_only(render):
    store = Endpoint.outside("s3", "203.0.113.20")
    for case, port in (("s3-external", 9443), ("s3-aws-workload-identity", 443)):
        objects = render(CASES[case].values)
        policies = by_kind(objects, "NetworkPolicy")
        pods = release_pods(objects)
        # (On 443 the operator and its uninstall hook are allowed anywhere already: the Kubernetes
        # API, whose address the chart does not know unless networkPolicy.kubeAPIServer.cidrs says so.)
        expected = {"api", "worker"} | ({"operator", "operator-uninstall"} if port == 443 else set())
        assert {name for name, pod in pods.items() if traffic_allowed(policies, pod, store, port)} == expected, case
    filesystem = render({})
    policies = by_kind(filesystem, "NetworkPolicy")
    assert not any(
        traffic_allowed(policies, pod, store, 443)
        for name, pod in release_pods(filesystem).items()
        if name not in ("operator", "operator-uninstall")
    )


def test_default_deny_covers_every_pod_of_the_release_and_nothing_else(render):
    objects = render({})
    (deny,) = [p for p in by_kind(objects, "NetworkPolicy") if p["metadata"]["name"].endswith("default-deny")]
    assert deny["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert "ingress" not in deny["spec"] and "egress" not in deny["spec"]
    for pod in pod_templates(objects):
        assert selector_matches(deny["spec"]["podSelector"], pod.labels), pod.ref
    assert not selector_matches(deny["spec"]["podSelector"], STRANGER.labels)


# --- operator ------------------------------------------------------------------------------------


def test_operator_runs_once_in_its_own_namespace(render):
    objects = render({})
    deployment = named(objects, "Deployment", OPERATOR)
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"] == {"type": "Recreate"}
    spec = deployment["spec"]["template"]["spec"]
    assert spec["serviceAccountName"] == OPERATOR
    (container,) = spec["containers"]
    assert container["args"] == ["operator"]
    assert env_of(container)["IMGPROC_OPERATOR_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"health": 8080, "metrics": 9100}
    service = named(objects, "Service", f"{OPERATOR}-metrics")
    assert service["spec"]["ports"] == [{"name": "metrics", "port": 9100, "targetPort": "metrics", "protocol": "TCP"}]


def test_operator_role_is_least_privilege(render):
    objects = render({})
    assert not by_kind(objects, "ClusterRole") and not by_kind(objects, "ClusterRoleBinding")
    role = named(objects, "Role", OPERATOR)
    granted = set()
    for rule in role["rules"]:
        for field in ("apiGroups", "resources", "verbs", "resourceNames"):
            assert "*" not in rule.get(field, []), rule
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    for name in rule.get("resourceNames") or ["*any*"]:
                        granted.add((group, resource, verb, name))
    assert granted == {
        ("autoscaling.imgproc.dev", "workerautoscalers", "get", "*any*"),
        ("autoscaling.imgproc.dev", "workerautoscalers", "list", "*any*"),
        ("autoscaling.imgproc.dev", "workerautoscalers", "watch", "*any*"),
        ("autoscaling.imgproc.dev", "workerautoscalers", "patch", "*any*"),
        ("autoscaling.imgproc.dev", "workerautoscalers", "delete", WORKER),  # the pre-delete hook
        ("autoscaling.imgproc.dev", "workerautoscalers/status", "patch", "*any*"),
        ("apps", "deployments/scale", "get", WORKER),
        ("apps", "deployments/scale", "patch", WORKER),
        ("apps", "deployments", "get", WORKER),
        ("", "secrets", "get", "rel-redis"),
        ("", "events", "create", "*any*"),
    }
    binding = named(objects, "RoleBinding", OPERATOR)
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": OPERATOR, "namespace": NAMESPACE}]


def test_operator_role_names_the_redis_secret_the_autoscaler_reads(render):
    for case in ("external-urls", "external-hosts-existing-secrets"):
        objects = render(CASES[case].values)
        secret_ref = named(objects, "WorkerAutoscaler", WORKER)["spec"]["redis"]["secretRef"]
        (rule,) = [r for r in named(objects, "Role", OPERATOR)["rules"] if "secrets" in r["resources"]]
        assert rule["resourceNames"] == [secret_ref["name"]] and rule["verbs"] == ["get"]


def test_worker_autoscaler_defaults(render):
    objects = render({})
    spec = named(objects, "WorkerAutoscaler", WORKER)["spec"]
    assert spec == {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": WORKER},
        "redis": {"host": "rel-redis", "port": 6379, "db": 0, "secretRef": {"name": "rel-redis", "key": "password"}},
        "queues": ["imgproc"],
        "tasksPerReplica": 2,
        "minReplicaCount": 1,
        "maxReplicaCount": 10,
        "activationThreshold": 0,
        "pollingInterval": 5,
        "cooldownPeriod": 60,
        "scaleUp": {"stabilizationWindowSeconds": 0, "maxStep": 4},
        "scaleDown": {"stabilizationWindowSeconds": 60, "maxStep": 1},
        "fallback": {"failureThreshold": 3, "replicas": 2},
    }
    tuned = named(
        render({"worker": {"concurrency": 4}, "autoscaler": {"minReplicaCount": 0}}), "WorkerAutoscaler", WORKER
    )["spec"]
    assert tuned["tasksPerReplica"] == 4 and tuned["minReplicaCount"] == 0
    external = named(render(CASES["external-urls"].values), "WorkerAutoscaler", WORKER)["spec"]["redis"]
    assert external == {
        "host": "redis.example.com",
        "port": 6380,
        "db": 2,
        "secretRef": {"name": f"{FULLNAME}-external", "key": "redis-password"},
    }


def test_keda_scaled_object_mirrors_the_autoscaler_settings(render):
    objects = render(CASES["keda"].values)
    scaled = named(objects, "ScaledObject", WORKER)["spec"]
    assert scaled["scaleTargetRef"]["name"] == WORKER
    assert (scaled["minReplicaCount"], scaled["maxReplicaCount"]) == (1, 10)
    assert scaled["fallback"] == {"failureThreshold": 3, "replicas": 2}
    (trigger,) = scaled["triggers"]
    assert trigger["type"] == "redis"
    assert trigger["metadata"] == {
        "address": f"rel-redis.{NAMESPACE}.svc:6379",
        "databaseIndex": "0",
        "listName": "imgproc",
        "listLength": "2",
        "activationListLength": "0",
    }
    auth = named(objects, "TriggerAuthentication", trigger["authenticationRef"]["name"])
    assert auth["spec"]["secretTargetRef"] == [{"parameter": "password", "name": "rel-redis", "key": "password"}]
    behavior = scaled["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] == 60
    assert behavior["scaleUp"]["policies"] == [{"type": "Pods", "value": 4, "periodSeconds": 5}]


# --- subcharts -----------------------------------------------------------------------------------


def test_redis_is_a_durable_broker(render):
    objects = render(CASES["redis-replicas"].values)
    conf = named(objects, "ConfigMap", "rel-redis")["data"]["redis.conf"].splitlines()
    assert "appendonly yes" in conf and "maxmemory-policy noeviction" in conf
    for name in ("rel-redis-master", "rel-redis-replicas"):
        statefulset = named(objects, "StatefulSet", name)
        (container,) = statefulset["spec"]["template"]["spec"]["containers"]
        start = container["args"][0]
        # The command-line options win over redis.conf (and extraConfig).
        assert "--appendonly yes --maxmemory-policy noeviction -" in start
        assert "requirepass" in start and "$" in start and "REDISCLI_AUTH" in start
        assert env_of(container)["REDISCLI_AUTH"] == {"secretKeyRef": {"name": "rel-redis", "key": "password"}}
        assert "redis-cli" in " ".join(container["readinessProbe"]["exec"]["command"])
        assert statefulset["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    replicas = named(objects, "StatefulSet", "rel-redis-replicas")
    assert "replicaof rel-redis 6379" in replicas["spec"]["template"]["spec"]["containers"][0]["args"][0]
    assert replicas["spec"]["replicas"] == 2


def test_postgresql_runs_as_its_image_user_with_a_non_superuser_app_role(render):
    objects = render({})
    statefulset = named(objects, "StatefulSet", "rel-postgresql")
    spec = statefulset["spec"]["template"]["spec"]
    assert spec["securityContext"]["runAsUser"] == 70 and spec["securityContext"]["fsGroup"] == 70
    (container,) = spec["containers"]
    env = env_of(container)
    assert env["POSTGRES_USER"] == "postgres" and env["APP_USER"] == "imgproc" and env["POSTGRES_DB"] == "imgproc"
    assert env["POSTGRES_PASSWORD_FILE"].startswith("/run/secrets/postgresql/")
    assert container["readinessProbe"]["exec"]["command"][0] == "pg_isready"
    init = named(objects, "ConfigMap", "rel-postgresql-initdb")["data"]["10-app-role.sh"]
    assert "CREATE ROLE" in init and "SUPERUSER" not in init and "OWNER TO" in init
    assert statefulset["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == "8Gi"
    assert named(objects, "Service", "rel-postgresql-hl")["spec"]["clusterIP"] == "None"


def test_subchart_images_are_pinned_to_a_version(render):
    for obj in render({}):
        for pod in pod_templates([obj]):
            for container in pod.spec["containers"]:
                image = container["image"]
                tag = image.rsplit("@", 1)[0].rsplit(":", 1)[-1]
                assert "@sha256:" in image or re.fullmatch(r"v?\d+\.\d+(\.\d+)?(-[a-z0-9.]+)?", tag), image


# --- values and schema ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"api": {"replicaCount": -1}}, "at '/api/replicaCount': minimum: got -1, want 0"),
        ({"worker": {"replicaCount": -2}}, "at '/worker/replicaCount': minimum: got -2, want 0"),
        ({"ingress": {"className": 5}}, "at '/ingress/className': got number, want string"),
        ({"unknownKey": True}, "additional properties 'unknownKey' not allowed"),
        ({"api": {"replicas": 2}}, "at '/api': additional properties 'replicas' not allowed"),
        (
            {"image": {"pullPolicy": "Sometimes"}},
            "at '/image/pullPolicy': value must be one of 'Always', 'IfNotPresent', 'Never'",
        ),
        ({"config": {"logFormat": "xml"}}, "at '/config/logFormat': value must be one of 'json', 'text'"),
        ({"config": {"corsOrigins": ["*"]}}, "at '/config/corsOrigins'"),
        ({"containerSecurityContext": {"allowPrivilegeEscalation": True}}, "value must be false"),
        ({"podSecurityContext": {"runAsUser": 0}}, "at '/podSecurityContext/runAsUser': minimum: got 0, want 1"),
        ({"autoscaler": {"maxReplicaCount": 0}}, "at '/autoscaler/maxReplicaCount': minimum: got 0, want 1"),
        ({"persistence": {"accessModes": ["ReadWriteSometimes"]}}, "at '/persistence/accessModes/0'"),
        ({"storage": {"backend": "minio"}}, "at '/storage/backend': value must be one of 'filesystem', 's3'"),
        ({"storage": {"s3": {"endpoint": "minio:9000"}}}, "at '/storage/s3/endpoint'"),
        ({"storage": {"s3": {"bucket": "My_Bucket"}}}, "at '/storage/s3/bucket'"),
        (
            {"storage": {"s3": {"accessKey": "AKIA..."}}},
            "at '/storage/s3': additional properties 'accessKey' not allowed",
        ),
        ({"storage": {"s3": {"signedUrls": {"expiresSeconds": 0}}}}, "at '/storage/s3/signedUrls/expiresSeconds'"),
        (
            {"objectStore": {"persistence": {"accessModes": ["Sometimes"]}}},
            "at '/objectStore/persistence/accessModes/0'",
        ),
        (
            {"postgresql": {"readReplicas": {"replicaCount": -1}}},
            "postgresql:\n- at '/readReplicas/replicaCount': minimum: got -1, want 0",
        ),
        (
            {"postgresql": {"readReplicas": {"walKeepSize": "1G"}}},
            "postgresql:\n- at '/readReplicas/walKeepSize': '1G' does not match pattern '^[1-9][0-9]*(kB|MB|GB|TB)$'",
        ),
        (
            {"postgresql": {"readReplicas": {"replicas": 1}}},
            "postgresql:\n- at '/readReplicas': additional properties 'replicas' not allowed",
        ),
        ({"redis": {"replica": {"replicaCount": -1}}}, "redis:\n- at '/replica/replicaCount': minimum: got -1, want 0"),
        ({"redis": {"image": {"pullPolicy": "Maybe"}}}, "redis:\n- at '/image/pullPolicy'"),
        (
            {"config": {"extraEnv": {"IMGPROC_X": "1", "PATH": "/x"}}},
            "'PATH' does not match pattern '^IMGPROC_[A-Z0-9_]+$'",
        ),
    ],
)
def test_values_schema_rejects_wrong_values_with_a_clear_message(helm_fails, values, message):
    error = helm_fails(values)
    assert "values don't meet the specifications of the schema" in error
    assert message in error, error


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"postgresql": {"enabled": False}},
            "postgresql.enabled=false needs externalDatabase.url or externalDatabase.host",
        ),
        ({"redis": {"enabled": False}}, "redis.enabled=false needs externalRedis.url or externalRedis.host"),
        ({"worker": {"terminationGracePeriodSeconds": 90}}, "must be longer than config.taskTimeLimit"),
        ({"config": {"taskSoftTimeLimit": 95}}, "config.taskSoftTimeLimit must be shorter than config.taskTimeLimit"),
        ({"config": {"visibilityTimeout": 60}}, "config.visibilityTimeout must be longer than config.taskTimeLimit"),
        ({"api": {"terminationGracePeriodSeconds": 20}}, "must be longer than api.preStopSleepSeconds + 20 s"),
        ({"autoscaler": {"minReplicaCount": 5, "maxReplicaCount": 3}}, "minReplicaCount must not exceed"),
        ({"autoscaler": {"fallback": {"replicas": 20}}}, "fallback.replicas must lie within"),
        ({"storage": {"backend": "s3"}}, "storage.backend=s3 needs storage.s3.bucket"),
        (
            {"objectStore": {"enabled": True}, "storage": {"s3": {"endpoint": "http://elsewhere:9000"}}},
            "storage.s3.endpoint is set by objectStore.enabled",
        ),
        (
            {
                "postgresql": {"enabled": False},
                "externalDatabase": {"url": "postgresql://u:p@db/x", "replicaHost": "db-ro"},
            },
            "with externalDatabase.url give externalDatabase.replicaUrl",
        ),
    ],
)
def test_inconsistent_values_fail_at_render_time_with_a_clear_message(helm_fails, values, message):
    assert message in helm_fails(values)


def _schema_objects(schema: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found = []
    if schema.get("type") == "object" and "properties" in schema:
        found.append((path, schema))
        for key, sub in schema["properties"].items():
            found.extend(_schema_objects(sub, f"{path}.{key}"))
    if schema.get("type") == "array" and isinstance(schema.get("items"), dict):
        found.extend(_schema_objects(schema["items"], f"{path}[]"))
    return found


@pytest.mark.parametrize("chart", ["", "charts/postgresql", "charts/redis"])
def test_values_schema_is_strict_and_covers_every_default(chart):
    directory = CHART / chart
    schema = json.loads((directory / "values.schema.json").read_text())
    values = yaml.safe_load((directory / "values.yaml").read_text())
    # Subchart sections of the parent are checked by the subcharts' own schemas; global is helm's.
    delegated = {".postgresql", ".redis", ".global"} if not chart else {".global"}
    for path, node in _schema_objects(schema):
        if path not in delegated:
            assert node.get("additionalProperties") is False, f"{path or 'top level'} admits unknown keys"
    jsonschema.Draft7Validator(schema).validate(values)

    def walk(value: Any, node: dict[str, Any], path: str) -> None:
        if isinstance(value, dict) and "properties" in node and path not in delegated:
            for key, sub in value.items():
                assert key in node["properties"], f"{path}.{key} is not in the schema"
                walk(sub, node["properties"][key], f"{path}.{key}")

    walk(values, schema, "")


def _undocumented_keys(text: str) -> list[str]:
    """Leaf keys of a values.yaml with no comment line directly above them or above one of
    their parent keys."""
    undocumented, stack = [], []  # stack of (indent, key, documented)
    lines = text.splitlines()
    for number, line in enumerate(lines):
        match = re.match(r"^( *)([A-Za-z0-9_.-]+):(.*)$", line)
        if not match:
            continue
        indent, key, rest = len(match.group(1)), match.group(2), match.group(3).strip()
        while stack and stack[-1][0] >= indent:
            stack.pop()
        documented = number > 0 and lines[number - 1].strip().startswith("#")
        is_leaf = rest not in ("",) and not rest.startswith("#")
        if is_leaf and not documented and not any(d for _, _, d in stack):
            undocumented.append(".".join([k for _, k, _ in stack] + [key]))
        stack.append((indent, key, documented))
    return undocumented


@pytest.mark.parametrize("chart", ["", "charts/postgresql", "charts/redis"])
def test_every_value_is_documented(chart):
    assert _undocumented_keys((CHART / chart / "values.yaml").read_text()) == []


def test_chart_metadata_and_vendored_subcharts():
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2" and chart["kubeVersion"] == ">=1.29.0-0"
    dependencies = {d["name"]: d for d in chart["dependencies"]}
    assert set(dependencies) == {"postgresql", "redis"}
    for name, dependency in dependencies.items():
        assert dependency["repository"] == f"file://charts/{name}"
        assert dependency["condition"] == f"{name}.enabled"
        subchart = yaml.safe_load((CHART / "charts" / name / "Chart.yaml").read_text())
        assert (subchart["name"], subchart["version"]) == (name, dependency["version"])
    assert not list((CHART / "charts").glob("*.tgz")), "unpacked subcharts only (no helm dependency build)"
    templates = {p.parent.name for p in (CHART / "templates").rglob("*.yaml")}
    assert {"api", "worker", "flower", "operator", "migrations", "tests"} <= templates


def test_redis_replicas_follow_the_master_on_its_service_port(render):
    objects = render({"redis": {"service": {"port": 6380}, "replica": {"replicaCount": 1}}})
    master = named(objects, "Service", f"{RELEASE}-redis")
    assert [port["port"] for port in master["spec"]["ports"]] == [6380]
    replica = named(objects, "StatefulSet", f"{RELEASE}-redis-replicas")
    start = replica["spec"]["template"]["spec"]["containers"][0]["args"][0]
    assert f"replicaof {RELEASE}-redis 6380" in start


def test_keda_reaches_the_bundled_redis_by_its_full_name_through_the_policies(render):
    objects = render(CASES["keda"].values)
    (scaled,) = by_kind(objects, "ScaledObject")
    assert scaled["spec"]["triggers"][0]["metadata"]["address"] == f"{RELEASE}-redis.{NAMESPACE}.svc:6379"
    policies, pods = by_kind(objects, "NetworkPolicy"), release_pods(objects)
    assert traffic_allowed(policies, KEDA_OPERATOR, pods["redis-master"], 6379)
    assert not traffic_allowed(policies, STRANGER, pods["redis-master"], 6379)
    # Without KEDA nobody outside the release gets in.
    plain = render(CASES["defaults"].values)
    redis_master = release_pods(plain)["redis-master"]
    assert not traffic_allowed(by_kind(plain, "NetworkPolicy"), KEDA_OPERATOR, redis_master, 6379)


def test_an_external_database_url_decides_the_port_the_policies_open(render):
    values = {
        **CASES["external-urls"].values,
        "externalDatabase": {"url": "postgresql+psycopg2://u:pw@pgbouncer.example.com:6432/imgproc"},
    }
    objects = render(values)
    policies, pods = by_kind(objects, "NetworkPolicy"), release_pods(objects)
    assert traffic_allowed(policies, pods["api"], EXTERNAL_DB, 6432)
    assert not traffic_allowed(policies, pods["api"], EXTERNAL_DB, 5432)


def test_the_operator_logs_in_as_the_redis_urls_acl_user(render):
    values = {
        **CASES["external-urls"].values,
        "externalRedis": {"url": "redis://scaler:s3cret@redis.example.com:6380/2"},
    }
    (autoscaler,) = by_kind(render(values), "WorkerAutoscaler")
    redis = autoscaler["spec"]["redis"]
    assert (redis["host"], redis["port"], redis["db"], redis["username"]) == ("redis.example.com", 6380, 2, "scaler")


def test_percent_encoded_redis_credentials_are_refused_when_an_autoscaler_needs_them(render, helm_fails):
    values = {**CASES["external-urls"].values, "externalRedis": {"url": "redis://:p%40ss@redis.example.com:6380/2"}}
    assert "percent-encoded" in helm_fails(values)
    assert render({**values, "autoscaler": {"enabled": False}})  # the workers decode the URL themselves


@pytest.mark.parametrize("service_type", ["NodePort", "LoadBalancer"])
def test_an_api_service_exposed_outside_the_cluster_is_reachable_through_the_policies(render, service_type):
    objects = render({"api": {"service": {"type": service_type}}})
    policies, pods = by_kind(objects, "NetworkPolicy"), release_pods(objects)
    assert traffic_allowed(policies, Endpoint.outside("a-client", "198.51.100.7"), pods["api"], 8000)
    assert not traffic_allowed(policies, Endpoint.outside("a-client", "198.51.100.7"), pods["redis-master"], 6379)
