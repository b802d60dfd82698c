"""The API down while workers finish: their reports are queued as `imgproc.report_outcome`
tasks and retried until the API is back and acknowledges them. (Moved here from
tests/integration/test_faults.py, since moved to tests/integration/reliability/.)"""

from __future__ import annotations

import time

from tests.fixtures.ledger import full_log, ledger, upload_many
from tests.support.waiting import wait_until


def test_reports_made_while_the_api_is_down_are_applied_when_it_returns(fault_stack):
    started = time.monotonic()
    with fault_stack(workers=0) as stack, stack.client() as client:
        ids = upload_many(client, 5)
        stack.stop_api()
        stack.start_worker()
        results_dir = stack.storage_dir / "results"
        wait_until(lambda: len(list(results_dir.glob("*.jpg"))) == len(ids), timeout=60, what="all results written")
        wait_until(
            lambda: full_log(stack, "worker0").count("queued for retry") >= len(ids),
            timeout=30,
            what="every report queued for retry",
        )
        stack.start_api()
        counts = ledger(stack, client, ids, name="API down while workers finish", faults=1, timeout=90, started=started)
    assert counts["completed"] == 5
