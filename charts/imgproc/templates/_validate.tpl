{{/* Fail-fast render-time checks of value combinations the schema cannot express. */}}

{{/* Render-time checks of combinations the schema cannot express. */}}
{{- define "imgproc.validate" -}}
{{- $m := .Values.metrics }}
{{- if and (not $m.enabled) (or $m.serviceMonitor.enabled $m.podMonitor.enabled $m.prometheusRule.enabled $m.dashboard.enabled) }}
{{- fail "metrics.serviceMonitor, podMonitor, prometheusRule and dashboard need metrics.enabled (API and workers serve no metrics without it)" }}
{{- end }}
{{- if and .Values.tracing.enabled (not .Values.tracing.endpoint) }}
{{- fail "tracing.enabled needs tracing.endpoint (the collector's OTLP/HTTP URL, e.g. http://otel-collector.observability:4318)" }}
{{- end }}
{{- if and (not .Values.postgresql.enabled) (not .Values.externalDatabase.url) (not .Values.externalDatabase.host) }}
{{- fail "postgresql.enabled=false needs externalDatabase.url or externalDatabase.host" }}
{{- end }}
{{- if and (not .Values.postgresql.enabled) .Values.externalDatabase.url .Values.externalDatabase.replicaHost }}
{{- fail "externalDatabase.replicaHost reuses host-style credentials; with externalDatabase.url give externalDatabase.replicaUrl" }}
{{- end }}
{{- if and (not .Values.redis.enabled) (not .Values.externalRedis.url) (not .Values.externalRedis.host) }}
{{- fail "redis.enabled=false needs externalRedis.url or externalRedis.host" }}
{{- end }}
{{- with .Values.externalRedis.url }}
{{- if not (hasPrefix "redis://" .) }}
{{- fail "externalRedis.url must start with redis:// (TLS is not supported by this chart's wiring)" }}
{{- end }}
{{- end }}
{{- if le (int .Values.worker.terminationGracePeriodSeconds) (int .Values.config.taskTimeLimit) }}
{{- fail (printf "worker.terminationGracePeriodSeconds (%v) must be longer than config.taskTimeLimit (%v), or scale-down kills running tasks" .Values.worker.terminationGracePeriodSeconds .Values.config.taskTimeLimit) }}
{{- end }}
{{- if ge (int .Values.config.taskSoftTimeLimit) (int .Values.config.taskTimeLimit) }}
{{- fail "config.taskSoftTimeLimit must be shorter than config.taskTimeLimit" }}
{{- end }}
{{- if le (int .Values.config.visibilityTimeout) (int .Values.config.taskTimeLimit) }}
{{- fail "config.visibilityTimeout must be longer than config.taskTimeLimit, or Redis re-delivers running tasks" }}
{{- end }}
{{- /* `imgproc api` gives uvicorn 20 s to finish open requests after SIGTERM. */}}
{{- if le (int .Values.api.terminationGracePeriodSeconds) (add .Values.api.preStopSleepSeconds 20 | int) }}
{{- fail (printf "api.terminationGracePeriodSeconds (%v) must be longer than api.preStopSleepSeconds + 20 s of uvicorn graceful shutdown" .Values.api.terminationGracePeriodSeconds) }}
{{- end }}
{{- $a := .Values.autoscaler }}
{{- if gt (int $a.minReplicaCount) (int $a.maxReplicaCount) }}
{{- fail "autoscaler.minReplicaCount must not exceed autoscaler.maxReplicaCount" }}
{{- end }}
{{- if or (lt (int $a.fallback.replicas) (int $a.minReplicaCount)) (gt (int $a.fallback.replicas) (int $a.maxReplicaCount)) }}
{{- fail "autoscaler.fallback.replicas must lie within [autoscaler.minReplicaCount, autoscaler.maxReplicaCount]" }}
{{- end }}
{{- if eq (include "imgproc.storageBackend" .) "s3" }}
{{- if not (include "imgproc.s3.bucket" .) }}
{{- fail "storage.backend=s3 needs storage.s3.bucket (or objectStore.enabled=true for the bundled store)" }}
{{- end }}
{{- range $key := list "endpoint" "publicEndpoint" }}
{{- with index $.Values.storage.s3 $key }}
{{- if not (or (hasPrefix "http://" .) (hasPrefix "https://" .)) }}
{{- fail (printf "storage.s3.%s must be an http:// or https:// URL, got %q" $key .) }}
{{- end }}
{{- end }}
{{- end }}
{{- if and .Values.objectStore.enabled .Values.storage.s3.endpoint }}
{{- fail "storage.s3.endpoint is set by objectStore.enabled (the bundled store); leave it empty" }}
{{- end }}
{{- end }}
{{- range $name, $_ := .Values.config.extraEnv }}
{{- if not (hasPrefix "IMGPROC_" $name) }}
{{- fail (printf "config.extraEnv: %s does not start with IMGPROC_" $name) }}
{{- end }}
{{- end }}
{{- end }}
