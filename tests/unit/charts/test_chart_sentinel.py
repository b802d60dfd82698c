"""redis.sentinel.enabled: the sentinels in the bundled subchart, their start scripts and how the
parent chart points every Redis client (API, worker, Flower, operator, KEDA) at them. The matrix
cases redis-sentinel and redis-sentinel-keda also run through every generic check
(test_chart_render: schema, Pod Security, hardening, references, policies)."""

from __future__ import annotations

import pytest

from tests.support.charts.manifests import Endpoint, by_kind, named, traffic_allowed
from tests.support.charts.matrix import CASES
from tests.support.charts.release import API, FLOWER, KEDA_OPERATOR, STRANGER, WORKER, release_pods
from tests.support.charts.rendering import NAMESPACE, RELEASE

REDIS = f"{RELEASE}-redis"
SENTINEL_NAMES = [f"{REDIS}-sentinel-{i}.{NAMESPACE}.svc.cluster.local:26379" for i in range(3)]


def env_of(objects, kind: str, name: str) -> dict[str, dict]:
    container = named(objects, kind, name)["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e for e in container.get("env", [])}


def scripts(objects) -> dict[str, str]:
    return named(objects, "ConfigMap", f"{REDIS}-scripts")["data"]


def test_three_sentinels_watch_the_master_under_its_stable_name(render):
    objects = render(CASES["redis-sentinel"].values)
    sentinels = named(objects, "StatefulSet", f"{REDIS}-sentinel")
    assert sentinels["spec"]["replicas"] == 3
    assert sentinels["spec"]["serviceName"] == f"{REDIS}-sentinel-headless"
    headless = named(objects, "Service", f"{REDIS}-sentinel-headless")
    assert headless["spec"]["clusterIP"] == "None" and headless["spec"]["publishNotReadyAddresses"]
    assert named(objects, "Service", f"{REDIS}-sentinel")["spec"]["ports"][0]["port"] == 26379
    script = scripts(objects)["start-sentinel.sh"]
    for line in (
        "sentinel resolve-hostnames yes",
        "sentinel announce-hostnames yes",
        "sentinel monitor $MASTER_NAME $1 $2 2",
        "sentinel down-after-milliseconds $MASTER_NAME 5000",
        "sentinel failover-timeout $MASTER_NAME 60000",
        'sentinel auth-pass $MASTER_NAME "${REDISCLI_AUTH}"',
        "sentinel announce-ip $ME",
        'requirepass "${REDISCLI_AUTH}"',
    ):
        assert line in script, line
    common = scripts(objects)["common.sh"]
    # Every pod is known by the name of its own ClusterIP Service: it always resolves, to the
    # same address, whether the pod is running, restarting or gone.
    assert f'ME="$HOST.{NAMESPACE}.svc.cluster.local"' in common
    assert f'MASTER0="{REDIS}-master-0.{NAMESPACE}.svc.cluster.local"' in common
    assert f"{REDIS}-replicas-1.{NAMESPACE}.svc.cluster.local" in common
    for pod in (f"{REDIS}-master-0", f"{REDIS}-replicas-0", f"{REDIS}-replicas-1", f"{REDIS}-sentinel-2"):
        service = named(objects, "Service", pod)
        assert service["spec"]["selector"]["statefulset.kubernetes.io/pod-name"] == pod
        assert service["spec"].get("clusterIP") != "None" and service["spec"]["publishNotReadyAddresses"]
    assert named(objects, "Service", f"{REDIS}-sentinel-2")["spec"]["ports"][0]["port"] == 26379
    # The password only from the Secret, never in the spec.
    (container,) = sentinels["spec"]["template"]["spec"]["containers"]
    assert container["env"][0]["valueFrom"]["secretKeyRef"] == {"name": REDIS, "key": "password"}


def test_every_redis_pod_takes_its_role_from_the_sentinels(render):
    objects = render(CASES["redis-sentinel"].values)
    for name, component in ((f"{REDIS}-master", "master"), (f"{REDIS}-replicas", "replica")):
        pod = named(objects, "StatefulSet", name)["spec"]["template"]["spec"]
        assert pod["containers"][0]["command"] == ["/bin/sh", "/scripts/start-redis.sh", component]
        assert {"name": "scripts", "configMap": {"name": f"{REDIS}-scripts"}} in pod["volumes"]
    script = scripts(objects)["start-redis.sh"]
    # A restarted old master asks first and becomes a replica of whoever was promoted; it
    # announces its stable name, which the sentinels hand to clients.
    assert "sentinel_master" in script and "replicaof $MASTER_HOST $MASTER_PORT" in script
    assert "replica-announce-ip $ME" in script and 'masterauth "${REDISCLI_AUTH}"' in script
    assert "--appendonly yes --maxmemory-policy noeviction" in script  # still a durable broker
    # Without sentinels nothing of this is rendered.
    plain = render(CASES["redis-replicas"].values)
    assert not [o for o in plain if o["metadata"]["name"].startswith(f"{REDIS}-sentinel")]
    assert not [o for o in by_kind(plain, "ConfigMap") if o["metadata"]["name"] == f"{REDIS}-scripts"]


def test_every_redis_client_is_pointed_at_the_sentinels(render):
    objects = render(CASES["redis-sentinel"].values)
    for name in (API, WORKER, FLOWER):
        env = env_of(objects, "Deployment", name)
        assert env["IMGPROC_REDIS_SENTINELS"]["value"] == ",".join(SENTINEL_NAMES), name
        assert env["IMGPROC_REDIS_SENTINEL_MASTER"]["value"] == "mymaster"
        assert env["IMGPROC_REDIS_SENTINEL_PASSWORD"]["value"] == "$(REDIS_PASSWORD)"
        assert env["IMGPROC_BROKER_URL"]["value"] == f"redis://:$(REDIS_PASSWORD)@{REDIS}:6379/0"
    (autoscaler,) = by_kind(objects, "WorkerAutoscaler")
    assert autoscaler["spec"]["redis"]["sentinel"] == {"addresses": SENTINEL_NAMES, "masterName": "mymaster"}
    assert autoscaler["spec"]["redis"]["secretRef"] == {"name": REDIS, "key": "password"}
    assert "IMGPROC_REDIS_SENTINELS" not in env_of(render(CASES["redis-replicas"].values), "Deployment", API)


def test_keda_uses_its_redis_sentinel_scaler(render):
    objects = render(CASES["redis-sentinel-keda"].values)
    (scaled,) = by_kind(objects, "ScaledObject")
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "redis-sentinel"
    assert trigger["metadata"]["addresses"] == ",".join(SENTINEL_NAMES)
    assert trigger["metadata"]["sentinelMaster"] == "mymaster"
    (auth,) = by_kind(objects, "TriggerAuthentication")
    assert {r["parameter"] for r in auth["spec"]["secretTargetRef"]} == {"password", "sentinelPassword"}
    policies, pods = by_kind(objects, "NetworkPolicy"), release_pods(objects)
    for target in ("redis-sentinel", "redis-master", "redis-replica"):
        port = 26379 if target == "redis-sentinel" else 6379
        assert traffic_allowed(policies, KEDA_OPERATOR, pods[target], port), target


def test_network_policies_let_roles_move_between_the_redis_pods(render):
    objects = render(CASES["redis-sentinel"].values)
    policies, pods = by_kind(objects, "NetworkPolicy"), release_pods(objects)
    redis_pods = ("redis-master", "redis-replica", "redis-sentinel")
    # Clients reach every server (any may be the master) and every sentinel.
    for client in ("api", "worker", "flower", "operator"):
        for target in redis_pods:
            port = 26379 if target == "redis-sentinel" else 6379
            assert traffic_allowed(policies, pods[client], pods[target], port), (client, target)
    # The Redis and sentinel pods among themselves, both ports.
    for source in redis_pods:
        for target in redis_pods:
            port = 26379 if target == "redis-sentinel" else 6379
            assert traffic_allowed(policies, pods[source], pods[target], port), (source, target)
    for target in redis_pods:
        for source in ("migrations", "smoke-test"):
            assert not traffic_allowed(policies, pods[source], pods[target], 6379), (source, target)
        assert not traffic_allowed(policies, STRANGER, pods[target], 26379), target
        # Nothing else leaves the Redis pods.
        assert not traffic_allowed(policies, pods[target], pods["api"], 8000)
        assert not traffic_allowed(policies, pods[target], Endpoint.outside("x", "203.0.113.9"), 6379)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"sentinel": {"enabled": True}}, "needs redis.replica.replicaCount >= 1"),
        ({"sentinel": {"enabled": True, "quorum": 4}, "replica": {"replicaCount": 1}}, "quorum must not exceed"),
        ({"sentinel": {"enabled": True, "replicaCount": 2}, "replica": {"replicaCount": 1}}, "minimum"),
        ({"sentinel": {"enabled": True, "masterName": "my master"}, "replica": {"replicaCount": 1}}, "masterName"),
        ({"sentinel": {"enabled": True, "quorom": 2}, "replica": {"replicaCount": 1}}, "quorom"),
    ],
)
def test_bad_sentinel_values_are_refused(helm_fails, values, message):
    assert message in helm_fails({"redis": values})


def test_the_sentinel_settings_reach_the_scripts(render):
    objects = render(
        {
            "redis": {
                "replica": {"replicaCount": 1},
                "sentinel": {
                    "enabled": True,
                    "replicaCount": 5,
                    "quorum": 3,
                    "masterName": "broker",
                    "downAfterMilliseconds": 2000,
                    "failoverTimeout": 20000,
                    "port": 26380,
                },
                "clusterDomain": "example.internal",
            }
        }
    )
    assert named(objects, "StatefulSet", f"{REDIS}-sentinel")["spec"]["replicas"] == 5
    data = scripts(objects)
    assert 'MASTER_NAME="broker"' in data["common.sh"] and "SENTINEL_PORT=26380" in data["common.sh"]
    assert "sentinel monitor $MASTER_NAME $1 $2 3" in data["start-sentinel.sh"]
    assert "sentinel down-after-milliseconds $MASTER_NAME 2000" in data["start-sentinel.sh"]
    assert f"{NAMESPACE}.svc.example.internal" in data["common.sh"]
    # A restarted master waits for the failover down-after + 20 s at most.
    assert "+ 22 ))" in data["start-redis.sh"]
    env = env_of(objects, "Deployment", API)
    assert env["IMGPROC_REDIS_SENTINELS"]["value"].count(":26380") == 5
    assert env["IMGPROC_REDIS_SENTINEL_MASTER"]["value"] == "broker"


def test_notes_say_how_to_ask_the_sentinels_for_the_master(notes):
    text = notes(CASES["redis-sentinel"].values)
    command = f"kubectl -n {NAMESPACE} exec {REDIS}-sentinel-0 -- redis-cli -p 26379"
    assert f"{command} sentinel get-master-addr-by-name mymaster" in text
    assert "sentinel" not in notes({})
