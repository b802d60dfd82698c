"""The chart as `ct install` would check it, on real pods: install --wait --atomic into a
restricted namespace with the bundled PostgreSQL and Redis, the ingress and the autoscaler on;
helm test; the REST flow through Traefik; NetworkPolicies enforced by kube-router, seen from
inside pods; an upgrade under load; uninstall leaving only what the chart keeps.

The tests of this module share one release and run in file order (install first, uninstall
last), as the steps of `ct install` do.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from urllib.parse import urlparse

import httpx
import pytest

from tests.fixtures.cluster import APP_IMAGE_TAG, CHART, CLUSTER, LiveCluster, Release, timed
from tests.support.cluster import CONNECT, Burst, client, connect_from_pod, endpoints
from tests.support.frontend import browser, samples
from tests.support.frontend.page import choose_files, wait_for, wait_for_list_loaded, wait_for_tasks
from tests.support.images import decode, jpeg, photo
from tests.support.tasks import upload_accepted, wait_for_terminal

PRESETS = [
    {"name": "thumb", "width": 160, "height": 160, "fit": "cover", "formats": ["webp"]},
    {"name": "web", "width": 800, "height": 600, "formats": ["jpeg"], "default": True},
    {"name": "large", "width": 1600, "height": 1200, "formats": ["avif", "webp"]},
]


@pytest.fixture(scope="module")
def release(live_cluster: LiveCluster) -> Iterator[Release]:
    # A shorter scale-down window than the default 60 s, so the return to the minimum is seen
    # within the autoscaling test's bound.
    installed = live_cluster.install(
        live_cluster.new_namespace("chart"),
        "--set",
        "autoscaler.scaleDown.stabilizationWindowSeconds=15",
        "--set",
        "autoscaler.cooldownPeriod=15",
        # The default preset is today's single JPEG, so the legacy flow below sees no change.
        "--set-json",
        f"config.presets={json.dumps(PRESETS)}",
    )
    yield installed
    installed.helm("uninstall", installed.name, "--wait", check=False)


# --------------------------------------------------------------------------- install


def test_every_pod_is_ready_under_the_restricted_policy(release: Release, live_cluster: LiveCluster):
    pods = live_cluster.get("pods", "-n", release.namespace)["items"]
    running = [p for p in pods if p["status"]["phase"] == "Running"]
    components = {p["metadata"]["labels"].get("app.kubernetes.io/component") for p in running}
    assert {"api", "worker", "flower", "operator", "primary", "master"} <= components, components
    for pod in running:
        ready = {c["type"]: c["status"] for c in pod["status"]["conditions"]}
        assert ready["Ready"] == "True", (pod["metadata"]["name"], pod["status"])
    namespace = live_cluster.get("namespace", release.namespace)
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_helm_test_passes(release: Release):
    result = release.helm("test", release.name, "--logs", timeout=300)
    assert "Phase:          Succeeded" in result.stdout, result.stdout
    assert "ok: task" in result.stdout


# --------------------------------------------------------------------------- through the ingress


def test_presets_through_the_ingress(release: Release):
    """One upload asking for three presets: every variant is made by the worker pods from the
    ConfigMap's list, listed by the API and served through Traefik; the format of a bare preset
    name follows Accept."""
    with client(release) as alice:
        response = alice.post(
            "/api/newTask",
            files={"file": ("p.jpg", jpeg(2400, 1800), "image/jpeg")},
            data={"presets": "thumb,web,large"},
        )
        assert response.status_code == 200, response.text
        task_id = response.json()["task_id"]
        assert wait_for_terminal(alice, task_id, timeout=120)["status"] == "completed"
        task = alice.get(f"/api/tasks/{task_id}").json()
        made = {(v["preset"], v["format"]): (v["width"], v["height"]) for v in task["variants"]}
        assert made == {
            ("large", "avif"): (1600, 1200),
            ("large", "webp"): (1600, 1200),
            ("web", "jpeg"): (800, 600),
            ("thumb", "webp"): (160, 160),
        }
        for variant in task["variants"]:
            served = alice.get(variant["url"])
            assert served.status_code == 200 and served.headers["content-type"] == f"image/{variant['format']}"
            assert decode(served.content).size == (variant["width"], variant["height"])
        negotiated = alice.get(f"/api/tasks/{task_id}/results/large", headers={"accept": "image/avif,image/webp,*/*"})
        assert negotiated.headers["content-type"] == "image/avif" and negotiated.headers["vary"] == "Accept"
        older = alice.get(f"/api/tasks/{task_id}/results/large", headers={"accept": "image/webp,*/*"})
        assert older.headers["content-type"] == "image/webp"
        assert task["srcset"]["webp"].endswith("/results/large.webp 1600w")


def test_rest_flow_through_the_ingress(release: Release):
    with client(release) as alice, client(release) as bob:
        health = alice.get("/")
        assert health.json() == {"status": "healthy", "message": "Image processing service is running"}
        # 1600x1200 stored with EXIF orientation 6 (rotate 90°): upright it is 1200x1600.
        task_id = upload_accepted(alice, jpeg(1600, 1200, orientation=6))
        status = wait_for_terminal(alice, task_id, timeout=120)
        assert status["status"] == "completed", status
        metadata = json.loads(status["metadata"])
        assert metadata["original_size"] > 0 and metadata["processed_size"] > 0
        result = alice.get(f"/api/tasks/{task_id}/result")
        assert result.status_code == 200 and result.headers["content-type"] == "image/jpeg"
        image = decode(result.content)
        assert image.format == "JPEG" and image.size == (450, 600), image.size  # EXIF applied, fits 800x600
        assert not image.getexif(), "metadata must be stripped"

        # Another cookie user sees nothing of it.
        assert bob.get(f"/api/isReady/{task_id}").status_code == 404
        assert bob.get(f"/api/tasks/{task_id}/result").status_code == 404
        assert all(t["id"] != task_id for t in bob.get("/api/tasks").json()["items"])


def test_the_webhook_is_not_reachable_through_the_ingress(release: Release, live_cluster: LiveCluster):
    with client(release) as user:
        for path in ("/api/webhook/task-complete", "/api/webhook/", "/api/webhook/task-complete/../x"):
            response = user.post(path, content=b"{}", headers={"Content-Type": "application/json"})
            # Traefik's own answer for an unreachable backend, never the app's (401 unsigned).
            assert response.status_code == 502, (path, response.status_code, response.text)
            assert "detail" not in response.text
    # The worker reaches it inside the cluster (an unsigned report is refused by the app itself).
    worker = release.pods("worker")[0]["metadata"]["name"]
    host, port = endpoints(release)["api"]
    script = f"import httpx; print(httpx.post('http://{host}:{port}/api/webhook/task-complete', json={{}}).status_code)"
    answer = live_cluster.exec_python(release.namespace, worker, script)
    assert answer.stdout.strip() == "401", answer


@pytest.mark.browser
def test_an_upload_ends_completed_on_the_page(release: Release, tmp_path):
    if not browser.available():
        pytest.fail("chromium and chromium-driver are missing: run scripts/system-packages", pytrace=False)
    # The release's ingress host resolves to the ingress's address, as DNS would make it.
    ingress = urlparse(release.url).hostname
    with browser.chromium(extra_args=(f"--host-resolver-rules=MAP {release.host} {ingress}",)) as driver:
        driver.get(f"http://{release.host}/frontend/")
        wait_for(driver, lambda d: d.execute_script("return document.getElementById('tasks-heading') !== null"))
        wait_for_list_loaded(driver)
        choose_files(driver, samples.write(tmp_path, "cluster.jpg", samples.picture(1600, 1200, seed=3, fmt="JPEG")))
        [row] = wait_for_tasks(driver, 1)
    assert row["status"] == "completed" and row["badge"] == "Completed", row
    assert "800\u00d7600 JPEG" in row["text"], row["text"]


# --------------------------------------------------------------------------- autoscaling


def test_the_operator_scales_real_worker_pods_from_the_queue(release: Release, live_cluster: LiveCluster):
    """The operator, in its pod with its Role, reads the bundled Redis's queue and moves the worker
    Deployment; the new pods really start and take tasks; back at the minimum when drained."""
    worker = f"{release.name}-worker" if release.name == "imgproc" else f"{release.name}-imgproc-worker"
    autoscaler = live_cluster.get("workerautoscaler", worker, "-n", release.namespace)
    conditions = {c["type"]: c["status"] for c in autoscaler["status"]["conditions"]}
    assert conditions["Ready"] == "True", autoscaler["status"]
    minimum = autoscaler["spec"]["minReplicaCount"]

    def deployment() -> tuple[int, int]:
        status = live_cluster.get("deployment", worker, "-n", release.namespace)
        return status["spec"]["replicas"], status["status"].get("readyReplicas", 0)

    assert deployment()[0] == minimum
    data = photo(4000, 3000)
    started = time.monotonic()
    accepted: list[tuple[httpx.Client, int]] = []
    users = [client(release) for _ in range(3)]

    def burst(user: httpx.Client) -> None:
        for _ in range(16):
            accepted.append((user, upload_accepted(user, data)))

    senders = [threading.Thread(target=burst, args=(user,)) for user in users]
    for sender in senders:
        sender.start()
    timeline: list[tuple[float, int, int]] = []
    while any(sender.is_alive() for sender in senders) or time.monotonic() - started < 60:
        replicas, ready = deployment()
        if not timeline or timeline[-1][1:] != (replicas, ready):
            timeline.append((round(time.monotonic() - started, 1), replicas, ready))
        if ready > minimum:
            break
        time.sleep(0.5)
    for sender in senders:
        sender.join(timeout=120)
    print(f"autoscaling timeline (s, replicas, ready): {timeline}")
    assert len(accepted) == 48
    first_up = next((t for t, replicas, _ in timeline if replicas > minimum), None)
    assert first_up is not None, timeline
    assert any(ready > minimum for _, _, ready in timeline), f"no extra worker pod became ready: {timeline}"
    statuses = [wait_for_terminal(user, task_id, timeout=300)["status"] for user, task_id in accepted]
    assert statuses.count("completed") == 48, statuses
    drained = time.monotonic() - started
    deadline = time.monotonic() + 180
    while deployment() != (minimum, minimum) and time.monotonic() < deadline:
        time.sleep(2)
    assert deployment() == (minimum, minimum), deployment()
    print(
        f"first scale-up {first_up:.1f} s after the burst began; drained at {drained:.1f} s; "
        f"back at {minimum} replica(s) at {time.monotonic() - started:.1f} s"
    )
    for user in users:
        user.close()


# --------------------------------------------------------------------------- NetworkPolicies


def test_network_policies_are_enforced_from_inside_pods(release: Release, live_cluster: LiveCluster):
    targets = list(endpoints(release).values())
    ingress = ("traefik.traefik.svc.cluster.local", 80)
    # A pod of the release's namespace that no policy admits. It resolves the names and reaches
    # the ingress controller (no policy there), so a refusal below is the policies' doing.
    code, output = live_cluster.probe_pod(
        release.namespace, "outsider", CONNECT % ([ingress, *targets],), labels={"app.kubernetes.io/name": "outsider"}
    )
    assert code == 0, output
    outsider = eval(output.strip())  # noqa: S307
    assert outsider.pop(f"{ingress[0]}:{ingress[1]}") == "open", outsider
    assert set(outsider.values()) <= {"ConnectionRefusedError", "TimeoutError"}, outsider

    # The worker reaches PostgreSQL, Redis and the API's webhook port.
    worker = release.pods("worker")[0]["metadata"]["name"]
    assert set(connect_from_pod(live_cluster, release, worker, targets).values()) == {"open"}
    # The API reaches its dependencies.
    api = release.pods("api")[0]["metadata"]["name"]
    from_api = connect_from_pod(live_cluster, release, api, targets[:2])
    assert set(from_api.values()) == {"open"}, from_api


# --------------------------------------------------------------------------- upgrade and uninstall


def migration_job_events(release: Release) -> dict[str, list[str]]:
    """Job uid -> the Job controller's event reasons for the release's migration Jobs (events
    outlive the Jobs, which are deleted once they succeeded)."""
    prefix = f"{release.name}-imgproc" if release.name != "imgproc" else "imgproc"
    selector = f"involvedObject.kind=Job,involvedObject.name={prefix}-migrations"
    events: dict[str, list[str]] = {}
    for event in release.cluster.get("events", "-n", release.namespace, "--field-selector", selector)["items"]:
        events.setdefault(event["involvedObject"]["uid"], []).extend([event["reason"]] * event.get("count", 1))
    return events


def test_upgrade_rolls_pods_under_load_without_losing_a_task(release: Release, live_cluster: LiveCluster):
    before = {p["metadata"]["name"] for p in release.pods("api") + release.pods("worker")}
    # A second tag of the same image: the Deployments roll as for a new release of the app.
    image = f"localhost/imgproc:{APP_IMAGE_TAG}"
    live_cluster.run(str(CLUSTER), "tag", image, f"{image}-next", timeout=300)
    stop = threading.Event()
    accepted: list[int] = []
    refusals: list[tuple[int, str | None]] = []
    failures: list[str] = []

    def keep_uploading() -> None:
        with client(release) as user:
            while not stop.is_set() and len(accepted) < 200:
                try:
                    response = user.post("/api/newTask", files={"file": ("u.jpg", jpeg(640, 480), "image/jpeg")})
                except httpx.HTTPError as error:
                    failures.append(repr(error))
                    time.sleep(0.5)
                    continue
                if response.status_code == 200:
                    accepted.append(response.json()["task_id"])
                elif response.status_code in (429, 503) and response.headers.get("Retry-After"):
                    # A documented refusal (rate limit, or a dependency away during the roll):
                    # the client backs off as told and tries again.
                    refusals.append((response.status_code, response.headers["Retry-After"]))
                    time.sleep(min(float(response.headers["Retry-After"]), 2.0))
                else:
                    failures.append(f"{response.status_code} {response.text[:200]}")
                time.sleep(0.2)
            # Every accepted task ends; the client's own cookie sees them all.
            for task_id in accepted:
                status = wait_for_terminal(user, task_id, timeout=180)
                if status["status"] != "completed":
                    failures.append(f"task {task_id}: {status}")

    migrations_before = migration_job_events(release)
    uploader = threading.Thread(target=keep_uploading)
    uploader.start()
    try:
        time.sleep(3)
        release.helm(
            "upgrade",
            release.name,
            str(CHART),
            "--reuse-values",
            "--set",
            f"image.tag={APP_IMAGE_TAG}-next",
            "--set",
            "config.logLevel=DEBUG",
            "--wait",
            "--timeout",
            "600s",
            timeout=700,
        )
        time.sleep(3)
    finally:
        stop.set()
        uploader.join(timeout=300)
    # helm --wait returns once the new pods are ready; the old ones may still be in their graceful
    # shutdown (preStop sleep, warm shutdown), so give them that long to go.
    deadline = time.monotonic() + 120
    while True:
        after = release.pods("api") + release.pods("worker")
        replaced = {p["metadata"]["name"] for p in after}.isdisjoint(before)
        if replaced or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert replaced, f"API and worker pods were not replaced: {[p['metadata']['name'] for p in after]}"
    assert all(p["spec"]["containers"][0]["image"].endswith(f":{APP_IMAGE_TAG}-next") for p in after)
    assert accepted, "no upload was accepted during the upgrade"
    # The pre-upgrade migration hook ran once: one new Job, which made one pod and completed.
    upgrade_jobs = {
        uid: reasons for uid, reasons in migration_job_events(release).items() if uid not in migrations_before
    }
    assert len(upgrade_jobs) == 1, upgrade_jobs
    [reasons] = upgrade_jobs.values()
    assert sorted(reasons) == ["Completed", "SuccessfulCreate"], reasons
    assert not failures, failures
    counts = {code: sum(1 for c, _ in refusals if c == code) for code in (429, 503)}
    print(f"upgrade under load: {len(accepted)} accepted, refused with Retry-After: {counts}")


def test_the_redis_pod_deleted_with_its_volume(release: Release, live_cluster: LiveCluster):
    """The default Redis keeps its AOF on a volume: the StatefulSet's new pod reloads the queue,
    so nothing waits for the 600 s requeue of processing tasks (tests/cluster/test_faults.py has
    the case without a volume). A message a worker had received but not started when the
    connection broke is dropped by Celery and parked by Redis until the visibility timeout: its
    task is still pending and is re-sent after RECONCILE_PENDING_AFTER_SECONDS (60 s; a CI run
    lost one such task for 180 s before that existed). Uploads during the restart get 503 with
    Retry-After, never a 5xx."""
    [master] = release.pods("master")
    source = release.since_now()
    with Burst(release, [photo(1920, 1080)], users=3, count=6, seconds=150) as burst:
        while len(burst.accepted) < 3 and not burst.done:
            time.sleep(0.2)
        live_cluster.kubectl("delete", "pod", "-n", release.namespace, master["metadata"]["name"])
    counts = burst.ledger(source, "cluster: Redis pod deleted (with its volume)", timeout=180)
    assert counts["completed"] == counts["accepted"] == 18


def test_uninstall_leaves_only_what_the_chart_keeps(release: Release, live_cluster: LiveCluster):
    # The pre-delete hook lets the operator release its WorkerAutoscaler first; before it, the
    # object kept kopf's finalizer forever (the operator's token was deleted with the release).
    with timed("helm uninstall --wait"):
        release.helm("uninstall", release.name, "--wait", timeout=300)
    kinds = (
        "deployments,statefulsets,replicasets,pods,services,configmaps,secrets,jobs,ingresses,networkpolicies,"
        "poddisruptionbudgets,serviceaccounts,roles,rolebindings,persistentvolumeclaims,workerautoscalers"
    )
    test_pod = f"Pod/{release.name}-smoke-test"
    deadline = time.monotonic() + 120
    while True:
        items = live_cluster.get(kinds, "-n", release.namespace)["items"]
        left = sorted(
            f"{item['kind']}/{item['metadata']['name']}"
            for item in items
            # Made by Kubernetes for every namespace, not by the chart.
            if not (item["kind"] == "ServiceAccount" and item["metadata"]["name"] == "default")
            and not (item["kind"] == "ConfigMap" and item["metadata"]["name"] == "kube-root-ca.crt")
        )
        if all(not name.startswith("Pod/") or name == test_pod for name in left) or time.monotonic() > deadline:
            break
        time.sleep(2)
    claims = {name for name in left if name.startswith("PersistentVolumeClaim/")}
    assert claims, "the claims the chart documents as kept are gone"
    # Also documented: the last helm test pod (Helm never deletes hook objects on uninstall).
    kept = {f"Secret/{release.name}-postgresql", f"Secret/{release.name}-redis", test_pod}
    assert set(left) - claims == kept, left
    # Nothing holds the namespace up: the documented "drop everything" finishes.
    with timed("kubectl delete namespace"):
        live_cluster.kubectl("delete", "namespace", release.namespace, "--wait", "--timeout=120s", timeout=150)
