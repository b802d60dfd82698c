"""Task records and their life: the database rows and queries (records, crud), sending work to
the worker (queueing) and re-sending work whose message was lost (requeue)."""
