"""The chart's PostgreSQL replica scripts run for real against a PostgreSQL the tests start."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.support.charts.manifests import named
from tests.support.charts.matrix import CASES

REPLICAS = CASES["postgresql-replicas"].values
READ = "rel-postgresql-read"


def _as_postgres(argv: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


def test_the_init_script_and_the_clone_script_make_a_streaming_replica(render, postgres_server, tmp_path):
    """20-replication-role.sh on a real server creates the role; the clone container's script,
    with that role's password in a file (a ':' and a '\\' in it, escaped for libpq), makes a copy
    that starts as a hot standby following the primary."""
    from sqlalchemy import create_engine, text

    from tests.fixtures.ports import free_port
    from tests.fixtures.postgres import _pg_bin
    from tests.support import waiting

    if not postgres_server.data_dir:
        pytest.skip("needs a PostgreSQL started by the tests")
    objects = render(REPLICAS)
    init = named(objects, "ConfigMap", "rel-postgresql-initdb")["data"]["20-replication-role.sh"]
    clone = named(objects, "StatefulSet", READ)["spec"]["template"]["spec"]["initContainers"][0]
    base = Path(tempfile.mkdtemp(prefix="imgproc-pg-clone-"))
    if os.geteuid() == 0:
        shutil.chown(base, user="postgres")
    user = f"repl_{os.getpid()}"
    password = "pa:ss\\word-" + base.name[-6:]
    (base / "password").write_text(password)
    (base / "hba").mkdir()
    (base / "hba" / "pg_hba.conf").write_text("")
    admin = create_engine(postgres_server.admin_url, isolation_level="AUTOCOMMIT")
    bin_dir = str(Path(_pg_bin("pg_basebackup")).parent)
    common = {"PATH": f"{bin_dir}:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
    replica_dir = base / "data" / "pgdata"
    try:
        if os.geteuid() == 0:
            for path in (base / "password", base / "hba", base / "hba" / "pg_hba.conf"):
                shutil.chown(path, user="postgres")
        subprocess.run(
            _as_postgres(["sh", "-ec", init]),
            check=True,
            capture_output=True,
            env={
                **common,
                "POSTGRES_USER": postgres_server.admin_url.split("://")[1].split("@")[0],
                "POSTGRES_DB": "postgres",
                "PGHOST": "127.0.0.1",
                "PGPORT": str(postgres_server.port),
                "REPLICATION_USER": user,
                "REPLICATION_PASSWORD_FILE": str(base / "password"),
                "PGDATA": str(base / "hba"),
            },
        )
        assert f"host replication {user} all scram-sha-256" in (base / "hba" / "pg_hba.conf").read_text()
        with admin.connect() as connection:
            assert connection.execute(
                text("SELECT rolreplication, rolsuper FROM pg_roles WHERE rolname = :u"), {"u": user}
            ).one() == (True, False)
        # The test server trusts loopback, so pg_basebackup connects without asking for the
        # password; the file must still be written in libpq's format for primary_conninfo.
        (base / "data").mkdir()
        (base / "run").mkdir()
        if os.geteuid() == 0:
            shutil.chown(base / "data", user="postgres")
            shutil.chown(base / "run", user="postgres")
        env = {
            **common,
            **{e["name"]: e["value"] for e in clone["env"]},
            "PGDATA": str(replica_dir),
            "PGPASSFILE": str(base / "run" / ".pgpass"),
            "PRIMARY_HOST": "127.0.0.1",
            "PRIMARY_PORT": str(postgres_server.port),
            "REPLICATION_USER": user,
            "REPLICATION_PASSWORD_FILE": str(base / "password"),
        }
        done = subprocess.run(
            _as_postgres([*clone["command"], *clone["args"]]), capture_output=True, text=True, env=env
        )
        assert done.returncode == 0, done.stderr
        assert "cloned the primary in" in done.stdout
        pgpass = base / "run" / ".pgpass"
        assert pgpass.read_text() == f"127.0.0.1:{postgres_server.port}:*:{user}:pa\\:ss\\\\word-{base.name[-6:]}\n"
        assert pgpass.stat().st_mode & 0o777 == 0o600
        assert (replica_dir / "standby.signal").exists() and not (base / "data" / "pgdata.clone").exists()
        auto = (replica_dir / "postgresql.auto.conf").read_text()
        assert f"passfile=''{pgpass}''" in auto and password not in auto
        # A second start finds the data directory and leaves it alone.
        again = subprocess.run(
            _as_postgres([*clone["command"], *clone["args"]]), capture_output=True, text=True, env=env
        )
        assert again.returncode == 0 and "following the primary" in again.stdout
        port = free_port()
        with open(replica_dir / "postgresql.conf", "a") as conf:
            conf.write(f"\nport = {port}\nunix_socket_directories = '{base / 'run'}'\n")
        subprocess.run(
            _as_postgres([_pg_bin("pg_ctl"), "-D", str(replica_dir), "-w", "-l", str(base / "replica.log"), "start"]),
            check=True,
            capture_output=True,
        )
        replica = create_engine(postgres_server.admin_url.replace(f":{postgres_server.port}/", f":{port}/"))
        with replica.connect() as connection:
            assert connection.scalar(text("SELECT pg_is_in_recovery()")) is True
            assert connection.scalar(text("SELECT status FROM pg_stat_wal_receiver")) == "streaming"
        replica.dispose()
        # The replica pod's readiness command, its socket directory and database mapped to
        # this server's: ready on the streaming standby, not on a server that streams nothing.
        server = named(objects, "StatefulSet", READ)["spec"]["template"]["spec"]["containers"][0]
        probe = [
            arg.replace("/var/run/postgresql", str(base / "run")).replace("--dbname=imgproc", "--dbname=postgres")
            for arg in server["readinessProbe"]["exec"]["command"]
        ]
        probe_env = {**common, "PGPORT": str(port)}
        assert subprocess.run(_as_postgres(probe), env=probe_env, capture_output=True).returncode == 0
        with open(replica_dir / "postgresql.auto.conf", "a") as conf:
            conf.write("\nprimary_conninfo = ''\n")  # cut off from the primary
        subprocess.run(
            _as_postgres([_pg_bin("pg_ctl"), "-D", str(replica_dir), "-w", "reload"]), check=True, capture_output=True
        )
        waiting.wait_until(
            lambda: subprocess.run(_as_postgres(probe), env=probe_env, capture_output=True).returncode != 0,
            timeout=30,
            what="the readiness probe failing without a primary",
        )
    finally:
        if replica_dir.exists():
            subprocess.run(
                _as_postgres([_pg_bin("pg_ctl"), "-D", str(replica_dir), "-m", "immediate", "stop"]),
                capture_output=True,
            )
        with admin.connect() as connection:
            connection.execute(text(f'DROP ROLE IF EXISTS "{user}"'))
        admin.dispose()
        shutil.rmtree(base, ignore_errors=True)
