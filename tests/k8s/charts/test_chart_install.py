"""charts/imgproc against a real kube-apiserver (tests/fixtures/kube.py): install, upgrade and
uninstall with helm, server-side validation of every object (hooks and the helm test pod
included), Pod Security admission at "restricted", and the operator's RBAC as seen by the API
server. No kubelet runs: nothing here waits for pods."""

from __future__ import annotations

import base64
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client import ApiException

from tests.fixtures.kube import KubeTestBed, pod_security_warnings
from tests.support.charts.manifests import pod_templates
from tests.support.charts.matrix import CASES
from tests.support.charts.rendering import CHART

RELEASE = "rel"
FULLNAME = f"{RELEASE}-imgproc"
WORKER, OPERATOR = f"{FULLNAME}-worker", f"{FULLNAME}-operator"
INSTALL_VALUES = {"ingress": {"enabled": True, "className": "nginx", "host": "imgproc.example.com"}}


def values_args(tmp_path, values: dict[str, Any]) -> list[str]:
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    return ["--values", str(path)]


def manifest_objects(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


@pytest.fixture(scope="module")
def installed(kube: KubeTestBed, tmp_path_factory) -> dict[str, Any]:
    """One release with the Ingress on, installed without hooks (the migration Job would wait
    for a pod that never runs); the hooks are checked on their own below."""
    namespace = kube.new_namespace("install")
    tmp = tmp_path_factory.mktemp("install")
    result = kube.helm(
        "install", RELEASE, str(CHART), "--namespace", namespace, "--no-hooks", *values_args(tmp, INSTALL_VALUES)
    )
    manifest = kube.helm("get", "manifest", RELEASE, "--namespace", namespace).stdout
    hooks = kube.helm("get", "hooks", RELEASE, "--namespace", namespace).stdout
    return {
        "namespace": namespace,
        "result": result,
        "objects": manifest_objects(manifest),
        "hooks": manifest_objects(hooks),
    }


def test_install_succeeds_without_a_single_pod_security_warning(installed):
    result = installed["result"]
    assert "STATUS: deployed" in result.stdout
    assert pod_security_warnings(result.stderr) == []
    assert "Warning" not in result.stderr, result.stderr


def test_install_notes_are_copy_pasteable(installed):
    namespace, notes = installed["namespace"], installed["result"].stdout.split("NOTES:", 1)[1]
    assert "export IMGPROC_URL=http://imgproc.example.com" in notes
    assert "curl -fsS -c jar.txt -b jar.txt -F file=@photo.jpg $IMGPROC_URL/api/newTask" in notes
    assert f"kubectl -n {namespace} get workerautoscalers -w" in notes
    assert f"helm test {RELEASE} -n {namespace} --logs" in notes
    # Plain-http Ingress with Secure cookies: curl would drop the cookie, and NOTES says so.
    assert "config.cookieSecure is on but the Ingress has no TLS" in " ".join(notes.split())


def test_installed_objects_exist_with_the_expected_fields(kube, installed):
    namespace = installed["namespace"]
    apps, core = client.AppsV1Api(kube.api_client), client.CoreV1Api(kube.api_client)
    deployments = {d.metadata.name: d for d in apps.list_namespaced_deployment(namespace).items}
    assert set(deployments) == {f"{FULLNAME}-{c}" for c in ("api", "worker", "flower", "operator")}
    assert deployments[f"{FULLNAME}-api"].spec.replicas == 2
    # Without a replicas field in the manifest the API server defaults it to 1; from then on
    # only the operator changes it.
    assert deployments[WORKER].spec.replicas == 1
    statefulsets = {s.metadata.name for s in apps.list_namespaced_stateful_set(namespace).items}
    assert statefulsets == {"rel-postgresql", "rel-redis-master"}
    services = {s.metadata.name: s for s in core.list_namespaced_service(namespace).items}
    assert {
        f"{FULLNAME}-api",
        f"{FULLNAME}-flower",
        f"{FULLNAME}-operator-metrics",
        f"{FULLNAME}-blocked",
        "rel-postgresql",
        "rel-postgresql-hl",
        "rel-redis",
        "rel-redis-master-headless",
    } == set(services)
    assert services[f"{FULLNAME}-api"].spec.type == "ClusterIP"
    networking = client.NetworkingV1Api(kube.api_client)
    (ingress,) = networking.list_namespaced_ingress(namespace).items
    paths = {p.path: p.backend.service.name for p in ingress.spec.rules[0].http.paths}
    assert paths["/api/webhook"] == f"{FULLNAME}-blocked" and paths["/api"] == f"{FULLNAME}-api"
    policies = {p.metadata.name for p in networking.list_namespaced_network_policy(namespace).items}
    assert f"{FULLNAME}-default-deny" in policies and len(policies) == 9
    policy = client.PolicyV1Api(kube.api_client)
    pdbs = {p.metadata.name for p in policy.list_namespaced_pod_disruption_budget(namespace).items}
    assert pdbs == {f"{FULLNAME}-api", f"{FULLNAME}-worker"}
    autoscaler = client.CustomObjectsApi(kube.api_client).get_namespaced_custom_object(
        "autoscaling.imgproc.dev", "v1alpha1", namespace, "workerautoscalers", WORKER
    )
    assert autoscaler["spec"]["scaleTargetRef"]["name"] == WORKER


def pod_of(pod) -> dict[str, Any]:
    """The Pod a controller would create from a template (Pod Security enforces on Pods only)."""
    name = pod.owner["metadata"]["name"]
    spec = dict(pod.spec)
    # What the StatefulSet controller does: one claim per template, named <template>-<set>-<n>.
    claims = [
        {"name": (claim := t["metadata"]["name"]), "persistentVolumeClaim": {"claimName": f"{claim}-{name}-0"}}
        for t in pod.owner["spec"].get("volumeClaimTemplates") or []
    ]
    spec["volumes"] = (spec.get("volumes") or []) + claims
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"check-{name}"[:63], "labels": pod.labels},
        "spec": spec,
    }


def test_every_pod_template_passes_enforced_pod_security(kube, installed):
    """Pod Security enforces on Pods only (Deployments just warn): create a Pod from every
    template, dry-run, in the namespace that enforces "restricted"."""
    namespace = installed["namespace"]
    templates = pod_templates(installed["objects"] + installed["hooks"])
    assert len(templates) == 9  # 4 Deployments, 2 StatefulSets, 2 hook Jobs and the test Pod
    for pod in templates:
        kube.create(pod_of(pod), namespace, dry_run=True)  # raises on any violation


def test_pod_security_enforcement_is_live(kube, installed):
    """Guards the previous test against passing vacuously."""
    bad = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "root"},
        "spec": {"containers": [{"name": "c", "image": "imgproc:0.1.0"}]},
    }
    with pytest.raises(ApiException) as error:
        kube.create(bad, installed["namespace"], dry_run=True)
    assert error.value.status == 403 and "PodSecurity" in error.value.body


def test_hooks_are_accepted_by_the_api_server(kube, installed):
    kinds = sorted((h["kind"], h["metadata"]["annotations"]["helm.sh/hook"]) for h in installed["hooks"])
    assert kinds == [
        ("Job", "post-install,pre-upgrade"),
        ("Job", "pre-delete"),
        ("NetworkPolicy", "pre-delete"),
        ("Pod", "test"),
    ]
    for hook in installed["hooks"]:
        kube.create(hook, installed["namespace"], dry_run=True)


@pytest.mark.parametrize("case", ["external-urls", "external-hosts-existing-secrets"])
def test_pre_install_hooks_for_an_external_database_are_accepted(kube, render, case):
    """With an external database the migration Job runs before anything else of the release
    exists: it and its credentials Secret must be complete on their own."""
    namespace = kube.new_namespace("hooks")
    hooks = [o for o in render(CASES[case].values) if "helm.sh/hook" in (o["metadata"].get("annotations") or {})]
    pre_install = sorted(
        (h for h in hooks if "pre-install" in h["metadata"]["annotations"]["helm.sh/hook"]),
        key=lambda h: int(h["metadata"]["annotations"].get("helm.sh/hook-weight", "0")),
    )
    assert [h["kind"] for h in pre_install] == (["Secret", "Job"] if case == "external-urls" else ["Job"])
    for hook in pre_install:
        kube.create(hook, namespace, dry_run=True)


def test_operator_rbac_grants_exactly_what_the_operator_needs(kube, installed):
    namespace = installed["namespace"]
    token = kube.service_account_token(namespace, OPERATOR)

    def can(verb, resource, group="", subresource="", name="", ns=namespace):
        return kube.can_i(token, verb, resource, ns, group=group, subresource=subresource, name=name)

    group = "autoscaling.imgproc.dev"
    for verb in ("get", "list", "watch", "patch"):
        assert can(verb, "workerautoscalers", group)
    assert can("patch", "workerautoscalers", group, subresource="status")
    assert can("patch", "deployments", "apps", subresource="scale", name=WORKER)
    assert can("get", "deployments", "apps", subresource="scale", name=WORKER)
    assert can("get", "secrets", name="rel-redis")
    assert can("create", "events")
    # ... and nothing else.
    assert not can("patch", "events") and not can("create", "events", "events.k8s.io")
    assert not can("patch", "deployments", "apps", subresource="scale", name=f"{FULLNAME}-api")
    assert not can("patch", "deployments", "apps", name=WORKER)
    assert not can("get", "secrets", name=FULLNAME)
    assert not can("list", "secrets")
    assert not can("list", "pods") and not can("create", "pods", subresource="exec")
    assert can("delete", "workerautoscalers", group, name=WORKER)  # the pre-delete hook
    assert not can("create", "workerautoscalers", group) and not can("delete", "workerautoscalers", group)
    assert not can("delete", "workerautoscalers", group, name="another-release-worker")
    assert not can("list", "workerautoscalers", group, ns="default")
    assert not can("list", "namespaces", ns="")
    assert not can("list", "customresourcedefinitions", "apiextensions.k8s.io", ns="")


def test_operator_can_scale_the_worker_with_its_own_token(kube, installed):
    """The scale subresource, the way the operator's code calls it, with the operator's identity."""
    namespace = installed["namespace"]
    token = kube.service_account_token(namespace, OPERATOR)
    with client.ApiClient(kube.client_configuration(token)) as api:
        apps = client.AppsV1Api(api)
        scale = apps.patch_namespaced_deployment_scale(WORKER, namespace, {"spec": {"replicas": 4}})
        assert scale.spec.replicas == 4
        with pytest.raises(ApiException) as error:
            apps.patch_namespaced_deployment_scale(f"{FULLNAME}-api", namespace, {"spec": {"replicas": 4}})
        assert error.value.status == 403
        secret = client.CoreV1Api(api).read_namespaced_secret("rel-redis", namespace)
        assert base64.b64decode(secret.data["password"])
    apps = client.AppsV1Api(kube.api_client)
    apps.patch_namespaced_deployment_scale(WORKER, namespace, {"spec": {"replicas": 1}})


def _secret_data(kube, namespace: str, name: str) -> dict[str, str]:
    return client.CoreV1Api(kube.api_client).read_namespaced_secret(name, namespace).data


def test_upgrade_keeps_generated_secrets_and_the_autoscaled_replica_count_and_uninstall_keeps_data(kube, tmp_path):
    namespace = kube.new_namespace("lifecycle")
    core, apps = client.CoreV1Api(kube.api_client), client.AppsV1Api(kube.api_client)
    kube.helm("install", RELEASE, str(CHART), "--namespace", namespace, "--no-hooks")
    secrets = {name: _secret_data(kube, namespace, name) for name in (FULLNAME, "rel-postgresql", "rel-redis")}
    assert all(len(base64.b64decode(v)) >= 24 for data in secrets.values() for v in data.values() if v)
    # The operator scaled the worker meanwhile.
    apps.patch_namespaced_deployment_scale(WORKER, namespace, {"spec": {"replicas": 5}})

    upgrade = kube.helm(
        "upgrade",
        RELEASE,
        str(CHART),
        "--namespace",
        namespace,
        "--no-hooks",
        "--reuse-values",
        "--set",
        "api.replicaCount=3",
    )
    assert pod_security_warnings(upgrade.stderr) == []
    for name, data in secrets.items():
        assert _secret_data(kube, namespace, name) == data, f"upgrade regenerated {name}"
    assert apps.read_namespaced_deployment(f"{FULLNAME}-api", namespace).spec.replicas == 3
    assert apps.read_namespaced_deployment(WORKER, namespace).spec.replicas == 5, "helm reset the autoscaler's count"

    # No kubelet, so the pre-delete hook Job would never finish (tests/cluster runs it on real pods).
    kube.helm("uninstall", RELEASE, "--namespace", namespace, "--no-hooks")
    assert apps.list_namespaced_deployment(namespace).items == []
    assert apps.list_namespaced_stateful_set(namespace).items == []
    remaining_secrets = {s.metadata.name for s in core.list_namespaced_secret(namespace).items}
    # Kept on purpose (helm.sh/resource-policy: keep): the database and broker passwords and the
    # shared files, which belong with the database volumes that survive an uninstall anyway.
    assert remaining_secrets == {"rel-postgresql", "rel-redis"}
    claims = {c.metadata.name for c in core.list_namespaced_persistent_volume_claim(namespace).items}
    assert claims == {f"{FULLNAME}-storage"}
    release_selector = f"app.kubernetes.io/instance={RELEASE}"
    assert core.list_namespaced_config_map(namespace, label_selector=release_selector).items == []

    # A reinstall adopts the kept objects and reads the same passwords back.
    kube.helm("install", RELEASE, str(CHART), "--namespace", namespace, "--no-hooks")
    for name in ("rel-postgresql", "rel-redis"):
        assert _secret_data(kube, namespace, name) == secrets[name]


def test_the_s3_backend_with_the_bundled_store_installs_with_no_shared_claim(kube, tmp_path):
    """What the cluster test will do for real (storage.backend=s3 + objectStore), as far as an
    API server without kubelets can tell: accepted, no pod-security warning, the only claim is
    the store's, API and worker pods mount none, every pod template passes "restricted"."""
    namespace = kube.new_namespace("s3")
    values = {**INSTALL_VALUES, "storage": {"backend": "s3"}, "objectStore": {"enabled": True}}
    result = kube.helm(
        "install", RELEASE, str(CHART), "--namespace", namespace, "--no-hooks", *values_args(tmp_path, values)
    )
    assert "STATUS: deployed" in result.stdout and pod_security_warnings(result.stderr) == []
    core, apps = client.CoreV1Api(kube.api_client), client.AppsV1Api(kube.api_client)
    claims = {c.metadata.name for c in core.list_namespaced_persistent_volume_claim(namespace).items}
    assert claims == {f"{FULLNAME}-object-store"}
    for name in ("api", "worker"):
        spec = apps.read_namespaced_deployment(f"{FULLNAME}-{name}", namespace).spec.template.spec
        assert not [v for v in spec.volumes if v.persistent_volume_claim], name
    secret = core.read_namespaced_secret(f"{FULLNAME}-object-store", namespace)
    assert set(secret.data) == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    manifest = manifest_objects(kube.helm("get", "manifest", RELEASE, "--namespace", namespace).stdout)
    templates = pod_templates(manifest)
    assert f"{FULLNAME}-object-store" in {p.owner["metadata"]["name"] for p in templates}
    for pod in templates:
        kube.create(pod_of(pod), namespace, dry_run=True)
    upgraded = kube.helm(
        "upgrade", RELEASE, str(CHART), "--namespace", namespace, "--no-hooks", *values_args(tmp_path, values)
    )
    assert "STATUS: deployed" in upgraded.stdout
    again = core.read_namespaced_secret(f"{FULLNAME}-object-store", namespace)
    assert again.data == secret.data  # generated once, kept across upgrades
