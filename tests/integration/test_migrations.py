"""The migrations on PostgreSQL: stepwise up and down, and API pods migrating at once."""

from __future__ import annotations

from app.tasks.schema import head_revision
from tests.support.migrations import upgrade_stepwise


def test_revisions_upgrade_and_downgrade_on_postgresql(pg_database):
    upgrade_stepwise(pg_database)


def test_api_pods_migrating_at_once_take_turns_on_postgresql(configure, pg_database, tmp_path):
    # With the bundled database every API pod's init container runs `imgproc migrate`.
    from concurrent.futures import ThreadPoolExecutor

    from app.tasks.schema import current_revision, upgrade

    configure(DATA_DIR=tmp_path / "data", DATABASE_URL=pg_database)
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = [pool.submit(upgrade) for _ in range(4)]
        errors = [future.exception() for future in results]
    assert errors == [None] * 4
    assert current_revision() == head_revision()
