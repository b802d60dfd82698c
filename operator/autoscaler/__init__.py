"""The imgproc worker autoscaler: a kopf operator that sizes the Celery worker Deployment
from the Redis queue (waiting + in-flight work).

Lives in the folder ``operator/autoscaler`` but is imported as ``autoscaler``: the stdlib
owns the name ``operator``.
"""

GROUP = "autoscaling.imgproc.dev"
VERSION = "v1alpha1"
PLURAL = "workerautoscalers"
