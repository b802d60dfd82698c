"""Redis (the broker) failing under a burst of uploads, with a Redis of the test's own.

While Redis is down an upload is answered 503 + Retry-After and leaves no row (never a 500,
never a row without a message). With AOF on, queued messages survive a crash; when Redis comes
back with no data at all, the API's reconciler re-enqueues what was lost."""

from __future__ import annotations

import time

import redis

from tests.fixtures.ledger import Burst, count_rows, full_log, ledger, upload_many
from tests.support.tasks import upload
from tests.support.waiting import wait_until

QUEUE = "imgproc"  # Settings.QUEUE_NAME


def queue_length(url: str) -> int:
    client = redis.Redis.from_url(url)
    try:
        return client.llen(QUEUE)
    finally:
        client.close()


def test_redis_crash_during_a_burst_loses_no_accepted_task(dedicated_redis, fault_stack):
    """Redis SIGKILLed mid-burst and restarted on its AOF: the messages queued before the
    crash are still there, and every accepted task completes. The reconciler cannot be what
    saved them: RECONCILE_AFTER_SECONDS stays at its 600 s default."""
    started = time.monotonic()
    with (
        fault_stack(redis_url=dedicated_redis.url, workers=1, delay=0.3, WORKER_CONCURRENCY=1) as stack,
        stack.client() as client,
    ):
        burst = Burst(client)
        burst.start()
        try:
            wait_until(lambda: len(burst.ids) >= 10, timeout=30, what="10 uploads accepted")
            dedicated_redis.kill()
            wait_until(lambda: burst.statuses[503] >= 3, timeout=30, what="uploads refused during the outage")
            dedicated_redis.start()
            survived = queue_length(dedicated_redis.url)
            accepted_at_restart = len(burst.ids)
            wait_until(lambda: len(burst.ids) >= accepted_at_restart + 5, timeout=30, what="uploads accepted again")
        finally:
            burst.stop()
        print(f"burst: {dict(burst.statuses)}; {survived} message(s) queued across the crash")
        counts = ledger(
            stack,
            client,
            burst.ids,
            name="Redis crash + restart (AOF) during a burst",
            faults=1,
            timeout=90,
            refused=burst.statuses[503],
            server_errors=burst.server_errors,
            started=started,
        )
        assert survived > 0, "no message was queued when Redis crashed: the test proved nothing"
        assert burst.without_retry_after == 0 and burst.transport_errors == 0
        assert count_rows(stack) == counts["accepted"], "a refused upload left a row behind"
        assert "re-enqueued" not in full_log(stack, "api")


def test_redis_restart_that_loses_its_data_is_healed_by_the_reconciler(dedicated_redis, fault_stack):
    """Redis comes back empty (AOF deleted): the queued messages are gone. Rows still pending
    after RECONCILE_AFTER_SECONDS are re-enqueued by the API's reconciler and complete."""
    started = time.monotonic()
    settings = {"RECONCILE_AFTER_SECONDS": 6, "RECONCILE_INTERVAL_SECONDS": 1}
    with fault_stack(redis_url=dedicated_redis.url, workers=0, **settings) as stack, stack.client() as client:
        first_upload = time.monotonic()
        ids = upload_many(client, 5)  # no worker yet: all five wait in the queue
        dedicated_redis.kill()
        dedicated_redis.wipe()
        refused = upload(client)
        assert refused.status_code == 503 and refused.headers.get("retry-after"), refused.text
        dedicated_redis.start()
        left = queue_length(dedicated_redis.url)
        if time.monotonic() - first_upload < 5:  # before the reconciler could have acted
            assert left == 0, "the wipe did not lose the queued messages"
        stack.start_worker()
        counts = ledger(
            stack,
            client,
            ids,
            name="Redis restart losing its data (reconciler)",
            faults=1,
            timeout=90,
            refused=1,
            started=started,
        )
        assert counts["completed"] == 5
        assert count_rows(stack) == 5
        assert "re-enqueued" in full_log(stack, "api")


def test_an_empty_redis_queue_counts_as_no_backlog(configure, fresh_redis_url, tmp_path):
    """Redis keeps no key for an empty list, so a passive declare of an empty (or wiped) queue
    answers 404. The reconciler asks for the backlog every round: that must read 0, not raise
    (it used to end the reconciler's loop for good)."""
    configure(
        DATA_DIR=tmp_path,
        BROKER_URL=fresh_redis_url,
        WEBHOOK_SECRET="s" * 32,
        DATABASE_URL="postgresql+psycopg2://unused@127.0.0.1:1/unused",
    )
    from app.tasks.queueing import enqueue_processing, waiting_messages

    assert waiting_messages() == 0
    enqueue_processing(1)
    enqueue_processing(2)
    assert waiting_messages() == 2
