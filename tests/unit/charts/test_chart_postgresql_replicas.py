"""PostgreSQL read replicas in the chart: the bundled subchart's streaming replicas
(postgresql.readReplicas.replicaCount), the API's IMGPROC_DATABASE_REPLICA_URL (bundled or
externalDatabase.replicaUrl/replicaHost) and the network paths between them. The clone and
init scripts the chart ships are also run for real, against a PostgreSQL on loopback."""

from __future__ import annotations

import base64

from tests.support.charts.manifests import Endpoint, by_kind, named, selector_matches, traffic_allowed
from tests.support.charts.matrix import CASES, EXTERNAL_HOSTS_WITH_SECRETS
from tests.support.charts.release import API, DNS, STRANGER, WORKER, env_of, release_pods

REPLICAS = CASES["postgresql-replicas"].values
READ = "rel-postgresql-read"


def _api_container(objects, name: str = "api") -> dict:
    spec = named(objects, "Deployment", API)["spec"]["template"]["spec"]
    return next(c for c in spec["containers"] + spec.get("initContainers", []) if c["name"] == name)


def test_no_replica_objects_and_no_replica_url_by_default(render):
    objects = render({})
    assert not [o for o in objects if o["metadata"]["name"].startswith(READ)]
    assert "IMGPROC_DATABASE_REPLICA_URL" not in env_of(_api_container(objects))


def test_replicas_clone_the_primary_with_pg_basebackup_and_run_its_image_read_only(render):
    objects = render(REPLICAS)
    primary = named(objects, "StatefulSet", "rel-postgresql")["spec"]["template"]["spec"]
    replicas = named(objects, "StatefulSet", READ)
    assert replicas["spec"]["replicas"] == 2
    spec = replicas["spec"]["template"]["spec"]
    (clone,) = spec["initContainers"]
    (server,) = spec["containers"]
    # The image contract: the primary's image, entrypoint and user; the server container runs the
    # image's own command on the cloned data directory.
    assert clone["image"] == server["image"] == primary["containers"][0]["image"]
    assert "command" not in server and "args" not in server
    assert spec["securityContext"] == primary["securityContext"]
    script = clone["args"][0]
    for flag in ("--write-recovery-conf", "--wal-method=stream", "--no-password", '--pgdata="$PGDATA.clone"'):
        assert flag in script
    assert 'mv "$PGDATA.clone" "$PGDATA"' in script
    env = env_of(clone)
    assert env["PRIMARY_HOST"] == "rel-postgresql" and env["PRIMARY_PORT"] == "5432"
    assert env["REPLICATION_USER"] == "replicator"
    assert env["REPLICATION_PASSWORD_FILE"] == "/run/secrets/postgresql/replication-password"
    assert env["PGDATA"] == env_of(server)["PGDATA"] == env_of(primary["containers"][0])["PGDATA"]
    # The password file lives in the pod's run directory, which the server mounts too.
    run = {m["name"]: m["mountPath"] for m in server["volumeMounts"]}["run"]
    assert env["PGPASSFILE"].startswith(run + "/")
    # Alive while it accepts connections, ready only while it streams (run for real below).
    assert server["livenessProbe"]["exec"]["command"][0] == "pg_isready"
    assert "pg_stat_wal_receiver" in server["readinessProbe"]["exec"]["command"][-1]
    # The primary keeps WAL for a replica that was away, only while there are replicas.
    assert primary["containers"][0]["args"] == ["-c", "wal_keep_size=1GB"]
    assert "args" not in named(render({}), "StatefulSet", "rel-postgresql")["spec"]["template"]["spec"]["containers"][0]
    assert replicas["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == "8Gi"


def test_the_read_service_selects_the_replicas_only_and_the_primary_service_the_primary_only(render):
    objects = render(REPLICAS)
    replica_labels = named(objects, "StatefulSet", READ)["spec"]["template"]["metadata"]["labels"]
    primary_labels = named(objects, "StatefulSet", "rel-postgresql")["spec"]["template"]["metadata"]["labels"]
    read = named(objects, "Service", READ)["spec"]
    assert read["ports"][0]["port"] == 5432 and read["type"] == "ClusterIP"
    selector = {"matchLabels": read["selector"]}
    assert selector_matches(selector, replica_labels) and not selector_matches(selector, primary_labels)
    main = {"matchLabels": named(objects, "Service", "rel-postgresql")["spec"]["selector"]}
    assert selector_matches(main, primary_labels) and not selector_matches(main, replica_labels)
    assert named(objects, "Service", f"{READ}-hl")["spec"]["clusterIP"] == "None"


def test_the_replication_role_comes_from_the_secret_and_the_init_script(render):
    objects = render(REPLICAS)
    secret = named(objects, "Secret", "rel-postgresql")["data"]
    assert len(base64.b64decode(secret["replication-password"])) == 32
    assert secret["replication-password"] not in (secret["password"], secret["postgres-password"])
    env = env_of(named(objects, "StatefulSet", "rel-postgresql")["spec"]["template"]["spec"]["containers"][0])
    assert env["REPLICATION_USER"] == "replicator"
    assert env["REPLICATION_PASSWORD_FILE"] == "/run/secrets/postgresql/replication-password"
    script = named(objects, "ConfigMap", "rel-postgresql-initdb")["data"]["20-replication-role.sh"]
    assert "REPLICATION LOGIN" in script and "SUPERUSER" not in script
    assert "host replication %s all scram-sha-256" in script


def test_only_the_api_container_reads_from_the_replicas_with_the_password_kept_in_the_secret(render):
    objects = render(REPLICAS)
    env = env_of(_api_container(objects))
    assert env["IMGPROC_DATABASE_REPLICA_URL"] == (
        "postgresql+psycopg2://imgproc:$(DATABASE_PASSWORD)@rel-postgresql-read:5432/imgproc"
    )
    names = [e["name"] for e in _api_container(objects)["env"]]
    assert names.index("DATABASE_PASSWORD") < names.index("IMGPROC_DATABASE_REPLICA_URL")
    assert "IMGPROC_DATABASE_REPLICA_URL" not in env_of(_api_container(objects, "schema"))
    worker = named(objects, "Deployment", WORKER)["spec"]["template"]["spec"]["containers"][0]
    assert "IMGPROC_DATABASE_REPLICA_URL" not in env_of(worker)


def test_network_policies_let_the_api_read_and_the_replicas_stream(render):
    objects = render(REPLICAS)
    policies = by_kind(objects, "NetworkPolicy")
    pods = release_pods(objects)
    replica, primary = pods["postgresql-read-replica"], pods["postgresql-primary"]
    assert traffic_allowed(policies, pods["api"], replica, 5432)
    assert traffic_allowed(policies, replica, primary, 5432)
    assert traffic_allowed(policies, replica, DNS, 53, "UDP")
    for other in ("worker", "migrations", "flower", "operator", "smoke-test"):
        assert not traffic_allowed(policies, pods[other], replica, 5432), other
    assert not traffic_allowed(policies, STRANGER, replica, 5432)
    assert not traffic_allowed(policies, replica, pods["redis-master"], 6379)
    assert not traffic_allowed(policies, replica, Endpoint.outside("anywhere", "203.0.113.50"), 5432)


def test_an_external_replica_url_is_kept_in_the_chart_secret_and_opens_its_port(render):
    objects = render(CASES["external-replica-url"].values)
    env = _api_container(objects)["env"]
    (entry,) = [e for e in env if e["name"] == "IMGPROC_DATABASE_REPLICA_URL"]
    ref = entry["valueFrom"]["secretKeyRef"]
    secret = named(objects, "Secret", ref["name"])["data"]
    assert base64.b64decode(secret[ref["key"]]).decode().endswith("@db-ro.example.com:6432/imgproc")
    policies = by_kind(objects, "NetworkPolicy")
    pods = release_pods(objects)
    replica = Endpoint.outside("external-replica", "203.0.113.20")
    assert traffic_allowed(policies, pods["api"], replica, 6432)
    assert not traffic_allowed(policies, pods["worker"], replica, 6432)


def test_an_external_replica_host_reuses_the_primarys_credentials(render):
    database = {**EXTERNAL_HOSTS_WITH_SECRETS["externalDatabase"], "replicaHost": "db-ro.example.com"}
    values = {**EXTERNAL_HOSTS_WITH_SECRETS, "externalDatabase": database}
    objects = render(values)
    env = env_of(_api_container(objects))
    assert env["IMGPROC_DATABASE_REPLICA_URL"] == (
        "postgresql+psycopg2://app:$(DATABASE_PASSWORD)@db-ro.example.com:5432/images"
    )
