"""Prometheus metrics of the API and of what API and workers share (storage, requeue): every
definition in one place. The worker's own are in worker/metrics.py; how they are recorded across
processes and served is app/core/metrics_export.py.

Conventions (Prometheus'): the ``imgproc_`` prefix, base units (seconds, bytes), counters named
without ``_total`` here because prometheus_client appends it (as operator/autoscaler/metrics.py
does). Every label has a bounded set of values: route *templates*, never raw paths; reasons from
the short lists below; never a task id, a user or a file name.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# --- HTTP ------------------------------------------------------------------------------------
# Status requests may long-poll up to 30 s (?wait=), uploads of large files take seconds.
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# Requests that match no route share one label value, so a scan of random paths adds no series.
UNMATCHED_ROUTE = "unmatched"
# Methods outside this set (h11 accepts any token as a method) are counted as "other".
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

HTTP_REQUESTS = Counter(
    "imgproc_http_requests",
    "HTTP requests answered by the API, by route template, method and status code.",
    ("route", "method", "status"),
)
HTTP_REQUEST_DURATION = Histogram(
    "imgproc_http_request_duration_seconds",
    "Time from a request's arrival to the end of its answer, by route template and method "
    "(long polls with ?wait= included).",
    ("route", "method"),
    buckets=HTTP_BUCKETS,
)

# --- uploads (POST /api/newTask) -------------------------------------------------------------
UPLOAD_ROUTE = "/api/newTask"
UPLOADS_ACCEPTED = Counter("imgproc_uploads_accepted", "Uploads accepted and queued for processing.")
UPLOADS_REFUSED = Counter(
    "imgproc_uploads_refused",
    "Uploads refused, by reason (app.api.errors.UploadRefusal lists them).",
    ("reason",),
)

# --- status long polls ------------------------------------------------------------------------
STATUS_WAITERS = Gauge(
    "imgproc_status_waiters",
    "Status requests waiting for their task's outcome (?wait=) in this API process.",
    multiprocess_mode="livesum",
)

# --- webhook (worker reports) -----------------------------------------------------------------
WEBHOOK_REPORTS = Counter(
    "imgproc_webhook_reports",
    "Outcome reports received on the webhook: applied (reason: the status), ignored (already_finished, "
    "task_gone) or refused (signature, replay, invalid).",
    ("result", "reason"),
)

# --- requeue (app.tasks.requeue) --------------------------------------------------------------
TASKS_REQUEUED = Counter(
    "imgproc_tasks_requeued",
    "Task messages sent again by the API's requeue rounds: dead_worker (its worker's heartbeat ran "
    "out) or stale (pending or processing for too long).",
    ("reason",),
)

# --- storage (app.storage, in API and workers alike) -----------------------------------------
STORAGE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
STORAGE_OPERATION_DURATION = Histogram(
    "imgproc_storage_operation_duration_seconds",
    "Duration of storage calls (failed ones included), by backend and operation.",
    ("backend", "operation"),
    buckets=STORAGE_BUCKETS,
)
STORAGE_ERRORS = Counter(
    "imgproc_storage_errors",
    "Storage calls that failed, by backend, operation and error: unavailable (retry later), "
    "not_found (a missing object) or other (a full disk, a bug).",
    ("backend", "operation", "error"),
)

# --- the database read replica (app.core.replica, the API's status reads) ---------------------
# No exporter runs beside the bundled PostgreSQL: what the API measures itself (replay lag
# against the primary's WAL position, every IMGPROC_DATABASE_REPLICA_CHECK_SECONDS while status
# reads come in) is what there is to alert on.
DATABASE_REPLICA_LAG = Gauge(
    "imgproc_database_replica_lag_seconds",
    "How far the read replica was behind the primary at this API process's last measurement; +Inf "
    "when it was unreachable or not a standby. Measured only while status reads come in.",
    multiprocess_mode="livemax",
)

# --- Redis Sentinel (app.core.redis_client) ---------------------------------------------------
REDIS_MASTER_CHANGES = Counter(
    "imgproc_redis_master_changes",
    "Times the sentinels named another Redis master than the one this process used before (a failover it followed).",
)
