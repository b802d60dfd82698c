"""storage.backend=s3 on real pods, with the chart's bundled object store (versitygw, built
here by `scripts/cluster image versitygw`): API and worker pods mount no shared volume, results
leave through a URL signed for the store's public host (exposed through the cluster's Traefik,
as docs/kubernetes.md tells users to), only API and worker pods may connect to the store, and a
store outage refuses uploads with 503 and loses nothing.

The tests of this module share one release and run in file order.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
import pytest

from tests.fixtures.cluster import CLUSTER, REPO_ROOT, LiveCluster, Release, timed
from tests.support.cluster import CONNECT, client, connect_from_pod
from tests.support.images import decode, jpeg
from tests.support.tasks import upload, upload_accepted, wait_for_terminal
from tests.support.waiting import wait_until

NAME = "store"  # release name: the objects are called store-imgproc-*
STORE = f"{NAME}-imgproc-object-store"


def store_host(namespace: str) -> str:
    return f"s3.{namespace}.imgproc.test"


def store_ingress(namespace: str) -> str:
    """What a user adds to expose the bundled store to browsers: an Ingress for its Service."""
    return json.dumps(
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": {"name": "object-store", "namespace": namespace},
            "spec": {
                "ingressClassName": "traefik",
                "rules": [
                    {
                        "host": store_host(namespace),
                        "http": {
                            "paths": [
                                {
                                    "path": "/",
                                    "pathType": "Prefix",
                                    "backend": {"service": {"name": STORE, "port": {"number": 7070}}},
                                }
                            ]
                        },
                    }
                ],
            },
        }
    )


@pytest.fixture(scope="module")
def release(live_cluster: LiveCluster) -> Iterator[Release]:
    with timed("versitygw image (build and load)"):
        image = live_cluster.run(str(CLUSTER), "image", "versitygw", timeout=600).stdout.split()[-1]
        live_cluster.run(str(CLUSTER), "load", image, timeout=300)
    namespace = live_cluster.new_namespace("s3")
    installed = live_cluster.install(
        namespace,
        "-f",
        str(REPO_ROOT / "k8s" / "values-s3.yaml"),
        "--set",
        f"storage.s3.publicEndpoint=http://{store_host(namespace)}",
        name=NAME,
    )
    live_cluster.kubectl("apply", "-f", "-", input=store_ingress(namespace))
    yield installed
    installed.helm("uninstall", installed.name, "--wait", check=False)


def store_get(release: Release, url: str) -> httpx.Response:
    """A browser's request for a signed URL: to the ingress, for the store's host."""
    parts = urlsplit(url)
    direct = urlunsplit(("http", urlsplit(release.url).netloc, parts.path, parts.query, ""))
    return httpx.get(direct, headers={"Host": parts.netloc}, timeout=30)


def test_api_and_worker_pods_mount_no_shared_volume(release: Release, live_cluster: LiveCluster):
    for component in ("api", "worker"):
        pods = release.pods(component)
        assert pods, component
        for pod in pods:
            claims = [v for v in pod["spec"].get("volumes", []) if "persistentVolumeClaim" in v]
            assert claims == [], (pod["metadata"]["name"], claims)
            assert pod["status"]["phase"] == "Running", pod["status"]
    names = {c["metadata"]["name"] for c in live_cluster.get("pvc", "-n", release.namespace)["items"]}
    assert f"{NAME}-imgproc-storage" not in names and STORE in names, names


def test_results_leave_through_a_signed_url_of_the_store(release: Release):
    with client(release) as alice, client(release) as bob:
        task_id = upload_accepted(alice, jpeg(1600, 1200, orientation=6))
        status = wait_for_terminal(alice, task_id, timeout=120)
        assert status["status"] == "completed", status
        assert json.loads(status["metadata"])["processed_size"] > 0

        redirect = alice.get(f"/api/tasks/{task_id}/result")
        assert redirect.status_code == 302, redirect.text
        location = redirect.headers["location"]
        assert urlsplit(location).netloc == store_host(release.namespace), location
        result = store_get(release, location)
        assert result.status_code == 200, result.text
        image = decode(result.content)
        assert image.format == "JPEG" and image.size == (450, 600), image.size
        assert not image.getexif()

        # The store checks the signature itself: a changed one is refused.
        parts = urlsplit(location)
        query = dict(parse_qsl(parts.query))
        signature = query["X-Amz-Signature"]
        query["X-Amz-Signature"] = ("0" if signature[0] != "0" else "1") + signature[1:]
        tampered = urlunsplit(parts._replace(query=urlencode(query)))
        assert store_get(release, tampered).status_code == 403
        # Another user gets no URL at all.
        assert bob.get(f"/api/tasks/{task_id}/result").status_code == 404


def test_only_api_and_worker_pods_reach_the_store(release: Release, live_cluster: LiveCluster):
    store = [(STORE, 7070)]
    for component in ("api", "worker"):
        pod = release.pods(component)[0]["metadata"]["name"]
        assert connect_from_pod(live_cluster, release, pod, store) == {f"{STORE}:7070": "open"}, component
    flower = release.pods("flower")[0]["metadata"]["name"]
    refused = connect_from_pod(live_cluster, release, flower, store)
    assert set(refused.values()) <= {"ConnectionRefusedError", "TimeoutError"}, refused
    code, output = live_cluster.probe_pod(
        release.namespace, "outsider", CONNECT % (store,), labels={"app.kubernetes.io/name": "outsider"}
    )
    assert code == 0, output
    assert set(eval(output.strip()).values()) <= {"ConnectionRefusedError", "TimeoutError"}, output  # noqa: S307


def test_a_store_outage_refuses_uploads_and_loses_nothing(release: Release, live_cluster: LiveCluster):
    scale = ("scale", "deployment", STORE, "-n", release.namespace)
    with client(release) as user:
        before = upload_accepted(user, jpeg(640, 480))
        live_cluster.kubectl(*scale, "--replicas=0")
        live_cluster.kubectl(
            "wait",
            "--for=delete",
            "pod",
            "-n",
            release.namespace,
            "-l",
            "app.kubernetes.io/component=object-store",
            "--timeout=60s",
            timeout=90,
        )
        # 20 s: long enough for readiness probes to have failed, were they to look at the store.
        refused: list[str] = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            response = user.post("/api/newTask", files={"file": ("o.jpg", jpeg(320, 240), "image/jpeg")})
            assert response.status_code == 503 and response.json()["detail"], (response.status_code, response.text)
            refused.append(response.headers["retry-after"])
            # What does not need the store keeps working through the ingress.
            assert user.get("/").status_code == 200
            assert user.get(f"/api/isReady/{before}").status_code == 200
            time.sleep(2)
        print(f"store outage: {len(refused)} uploads refused with 503, Retry-After {sorted(set(refused))}")
        live_cluster.kubectl(*scale, "--replicas=1")
        live_cluster.kubectl(
            "rollout", "status", "deployment", STORE, "-n", release.namespace, "--timeout=120s", timeout=150
        )

        # The store's pod is ready; its Service's endpoint reaches kube-proxy's rules a moment
        # later (a cold run saw the first upload after the rollout still refused): uploads must
        # be accepted again within seconds, each refusal a clean 503.
        def accepted_again() -> int | None:
            response = upload(user, jpeg(640, 480))
            assert response.status_code in (200, 503), (response.status_code, response.text)
            return response.json()["task_id"] if response.status_code == 200 else None

        after = wait_until(accepted_again, timeout=30, interval=1, what="an upload accepted once the store is back")
        # The task in flight when the store went away was retried, not failed.
        for task_id in (before, after):
            assert wait_for_terminal(user, task_id, timeout=180)["status"] == "completed", task_id
        # No refused upload left a row behind: this user has exactly the two accepted tasks.
        listed = {t["id"] for t in user.get("/api/tasks").json()["items"]}
        assert listed == {before, after}, listed
