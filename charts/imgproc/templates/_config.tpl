{{/* The non-secret IMGPROC_* settings. */}}

{{/* One definition feeds both the ConfigMap (API, worker, Flower, operator) and the inline env
of the migration Job, which runs as a pre-install hook before the ConfigMap exists. */}}

{{- define "imgproc.configData" -}}
{{- $c := .Values.config }}
IMGPROC_HOST: "0.0.0.0"
IMGPROC_PORT: "8000"
IMGPROC_DATA_DIR: /tmp/imgproc
{{- if eq (include "imgproc.storageBackend" .) "s3" }}
{{- $s3 := .Values.storage.s3 }}
IMGPROC_STORAGE_BACKEND: s3
{{- with include "imgproc.s3.endpoint" . }}
IMGPROC_S3_ENDPOINT_URL: {{ . | quote }}
{{- end }}
{{- with $s3.publicEndpoint }}
IMGPROC_S3_PUBLIC_ENDPOINT_URL: {{ . | quote }}
{{- end }}
IMGPROC_S3_BUCKET: {{ include "imgproc.s3.bucket" . | quote }}
IMGPROC_S3_REGION: {{ ternary .Values.objectStore.region $s3.region .Values.objectStore.enabled | quote }}
{{- with $s3.prefix }}
IMGPROC_S3_PREFIX: {{ . | quote }}
{{- end }}
{{- if not (kindIs "invalid" $s3.forcePathStyle) }}
IMGPROC_S3_FORCE_PATH_STYLE: {{ $s3.forcePathStyle | quote }}
{{- end }}
{{- if $s3.caBundle.secretName }}
IMGPROC_S3_CA_BUNDLE: /etc/imgproc/s3-ca/ca.pem
{{- end }}
{{- /* The bundled store is reachable in the cluster only unless publicEndpoint says where
       browsers find it: then results go through the API instead of a URL nobody can open. */}}
IMGPROC_S3_SIGNED_URLS: {{ ternary "true" "false" (and $s3.signedUrls.enabled (or (not .Values.objectStore.enabled) (ne $s3.publicEndpoint "")) | eq true) | quote }}
IMGPROC_S3_SIGNED_URL_SECONDS: {{ $s3.signedUrls.expiresSeconds | quote }}
{{- else }}
IMGPROC_STORAGE_BACKEND: filesystem
IMGPROC_STORAGE_DIR: /data
{{- end }}
IMGPROC_API_INTERNAL_URL: {{ printf "http://%s:%v" (include "imgproc.componentName" (dict "root" . "component" "api")) .Values.api.service.port | quote }}
IMGPROC_QUEUE_NAME: {{ $c.queueName | quote }}
IMGPROC_COOKIE_SECURE: {{ $c.cookieSecure | quote }}
IMGPROC_CORS_ORIGINS: {{ $c.corsOrigins | toJson | quote }}
{{- with $c.trustedProxies }}
IMGPROC_TRUSTED_PROXIES: {{ . | toJson | quote }}
{{- end }}
IMGPROC_MAX_UPLOAD_BYTES: {{ $c.maxUploadBytes | int64 | quote }}
IMGPROC_KEEP_ALIVE_SECONDS: {{ .Values.api.keepAliveSeconds | quote }}
IMGPROC_WORKER_CONCURRENCY: {{ .Values.worker.concurrency | quote }}
IMGPROC_TASK_SOFT_TIME_LIMIT: {{ $c.taskSoftTimeLimit | quote }}
IMGPROC_TASK_TIME_LIMIT: {{ $c.taskTimeLimit | quote }}
IMGPROC_VISIBILITY_TIMEOUT: {{ $c.visibilityTimeout | quote }}
IMGPROC_MAX_TASK_ATTEMPTS: {{ $c.maxTaskAttempts | quote }}
{{- with $c.presets }}
IMGPROC_PRESETS: {{ . | toJson | quote }}
{{- end }}
IMGPROC_MAX_OUTPUTS_PER_TASK: {{ $c.maxOutputsPerTask | quote }}
IMGPROC_WORKER_HEARTBEAT_FILE: /tmp/worker-heartbeat
IMGPROC_FLOWER_PORT: "5555"
IMGPROC_FLOWER_URL_PREFIX: flower
IMGPROC_OPERATOR_HEALTH_PORT: {{ .Values.autoscaler.operator.healthPort | quote }}
IMGPROC_OPERATOR_METRICS_PORT: {{ .Values.autoscaler.operator.metricsPort | quote }}
{{- if .Values.metrics.enabled }}
{{- /* Only `imgproc api` and `imgproc worker` open it; the other commands ignore it. */}}
IMGPROC_METRICS_PORT: {{ .Values.metrics.port | quote }}
{{- end }}
{{- with .Values.tracing }}
{{- if .enabled }}
{{- /* The standard OpenTelemetry variables: `imgproc api` and `imgproc worker` read them (app.core.tracing). */}}
OTEL_EXPORTER_OTLP_ENDPOINT: {{ .endpoint | quote }}
OTEL_TRACES_SAMPLER: {{ .sampler | quote }}
{{- with .samplerArg }}
OTEL_TRACES_SAMPLER_ARG: {{ . | quote }}
{{- end }}
{{- with .resourceAttributes }}
OTEL_RESOURCE_ATTRIBUTES: {{ include "imgproc.tracing.resourceAttributes" . | quote }}
{{- end }}
{{- with .disabledInstrumentations }}
OTEL_PYTHON_DISABLED_INSTRUMENTATIONS: {{ join "," . | quote }}
{{- end }}
{{- end }}
{{- end }}
IMGPROC_LOG_LEVEL: {{ $c.logLevel | quote }}
IMGPROC_LOG_FORMAT: {{ $c.logFormat | quote }}
{{- range $name, $value := $c.extraEnv }}
{{ $name }}: {{ $value | toString | quote }}
{{- end }}
{{- end }}

{{/* tracing.resourceAttributes as OTEL_RESOURCE_ATTRIBUTES: key=value pairs, comma-separated, sorted. */}}
{{- define "imgproc.tracing.resourceAttributes" -}}
{{- $pairs := list }}
{{- range $key, $value := . }}
{{- $pairs = append $pairs (printf "%s=%s" $key (toString $value)) }}
{{- end }}
{{- join "," $pairs }}
{{- end }}
