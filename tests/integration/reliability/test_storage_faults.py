"""The object store (a SeaweedFS of the test's own) stopped during a burst of uploads, then
started again, with API and workers on the S3 backend and PostgreSQL + Redis.

While the store is down an upload is answered 503 + Retry-After and leaves no row and no
object; a worker whose task cannot read its original or write its result retries the run
with back-off instead of failing it. When the store is back every accepted task completes,
with one result object each."""

from __future__ import annotations

import time

from tests.fixtures.ledger import Burst, count_rows, full_log, ledger
from tests.support.waiting import wait_until


def test_object_store_outage_during_a_burst_loses_and_duplicates_nothing(dedicated_s3, fault_stack, monkeypatch):
    s3 = dedicated_s3.settings_in_process(monkeypatch)  # the credentials are inherited by API and workers
    started = time.monotonic()
    with (
        fault_stack(workers=1, delay=0.3, WORKER_CONCURRENCY=2, **s3) as stack,
        stack.client() as client,
    ):
        burst = Burst(client)
        burst.start()
        try:
            wait_until(lambda: len(burst.ids) >= 10, timeout=30, what="10 uploads accepted")
            dedicated_s3.stop()
            outage = time.monotonic()
            wait_until(lambda: burst.statuses[503] >= 3, timeout=30, what="uploads refused during the outage")
            time.sleep(max(0.0, 3 - (time.monotonic() - outage)))  # the workers meet the outage too
            accepted_during_outage = len(burst.ids)
            dedicated_s3.start(create_bucket=False)
            wait_until(lambda: len(burst.ids) >= accepted_during_outage + 5, timeout=60, what="uploads accepted again")
        finally:
            burst.stop()
        print(f"burst: {dict(burst.statuses)}")
        counts = ledger(
            stack,
            client,
            burst.ids,
            name="object store stopped + restarted during a burst (S3)",
            faults=1,
            timeout=150,
            refused=burst.statuses[503],
            server_errors=burst.server_errors,
            started=started,
        )
        assert counts["failed"] == 0, counts["failed_reasons"]  # an outage fails no task
        assert burst.without_retry_after == 0 and burst.transport_errors == 0
        assert count_rows(stack) == counts["accepted"], "a refused upload left a row behind"
        originals = [k for k in dedicated_s3.keys("originals/")]
        assert len(originals) == counts["accepted"], "a refused upload left an object behind"
        assert "storage unavailable" in full_log(stack, "worker0"), "no worker met the outage: it proved nothing"
