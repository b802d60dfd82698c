{{/*
Naming, labels, images and the wiring of secrets and connection URLs into pods.
Every object is named "<fullname>-<component>" (components: api, worker, flower, operator,
migrations, smoke-test) except the ConfigMap, app Secret and ServiceAccount ("<fullname>").
*/}}

{{/* Chart name, overridable with nameOverride. */}}
{{- define "imgproc.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* "<release>-<name>", or just the release name when it already contains the chart name. */}}
{{- define "imgproc.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Name of one component's objects; call with (dict "root" $ "component" "api"). */}}
{{- define "imgproc.componentName" -}}
{{- printf "%s-%s" (include "imgproc.fullname" .root) .component | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* "<chart>-<version>" for the helm.sh/chart label. */}}
{{- define "imgproc.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The image tag actually deployed; also the app.kubernetes.io/version label. */}}
{{- define "imgproc.imageTag" -}}
{{- default .Chart.AppVersion .Values.image.tag }}
{{- end }}

{{/* Labels that never change for the life of an object (Deployment selectors are immutable). */}}
{{- define "imgproc.selectorLabels" -}}
app.kubernetes.io/name: {{ include "imgproc.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels for every object of the chart. */}}
{{- define "imgproc.labels" -}}
helm.sh/chart: {{ include "imgproc.chart" . }}
{{ include "imgproc.selectorLabels" . }}
app.kubernetes.io/version: {{ include "imgproc.imageTag" . | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/part-of: {{ .Values.global.partOf }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Labels for one component; call with (dict "root" $ "component" "worker"). */}}
{{- define "imgproc.componentLabels" -}}
{{ include "imgproc.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Selector labels for one component; call with (dict "root" $ "component" "worker"). */}}
{{- define "imgproc.componentSelectorLabels" -}}
{{ include "imgproc.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* "repository@digest" when a digest is given, else "repository:tag". */}}
{{- define "imgproc.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (include "imgproc.imageTag" .) }}
{{- end }}
{{- end }}

{{- define "imgproc.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "imgproc.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* ---------------------------------------------------------------------------------------
Pod building blocks shared by every imgproc pod (API, worker, Flower, operator, migrations,
smoke test), so all of them meet the restricted Pod Security Standard the same way.
--------------------------------------------------------------------------------------- */}}

{{- define "imgproc.podSecurityContext" -}}
{{- toYaml .Values.podSecurityContext }}
{{- end }}

{{- define "imgproc.containerSecurityContext" -}}
{{- toYaml .Values.containerSecurityContext }}
{{- end }}

{{/* The size-limited emptyDir behind /tmp (the root filesystem is read-only). */}}
{{- define "imgproc.tmpVolume" -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ .Values.tmpVolume.sizeLimit }}
{{- end }}

{{- define "imgproc.tmpVolumeMount" -}}
- name: tmp
  mountPath: /tmp
{{- end }}

{{/* ---------------------------------------------------------------------------------------
Storage: "filesystem" (a shared claim at /data) or "s3" (a bucket; the bundled objectStore
implies it). Everything below derives from these helpers so that the ConfigMap, the pods'
volumes and env, and the NetworkPolicies always agree.
--------------------------------------------------------------------------------------- */}}
{{- define "imgproc.storageBackend" -}}
{{- if .Values.objectStore.enabled }}s3{{ else }}{{ .Values.storage.backend }}{{ end }}
{{- end }}

{{- define "imgproc.objectStoreName" -}}
{{- include "imgproc.componentName" (dict "root" . "component" "object-store") }}
{{- end }}

{{/* The in-cluster endpoint API and workers use ("" = AWS). */}}
{{- define "imgproc.s3.endpoint" -}}
{{- if .Values.objectStore.enabled }}
{{- printf "http://%s:%v" (include "imgproc.objectStoreName" .) .Values.objectStore.service.port }}
{{- else }}
{{- .Values.storage.s3.endpoint }}
{{- end }}
{{- end }}

{{- define "imgproc.s3.bucket" -}}
{{- if .Values.objectStore.enabled }}{{ .Values.objectStore.bucket }}{{ else }}{{ .Values.storage.s3.bucket }}{{ end }}
{{- end }}

{{/* Secret with the access key pair ("" = none: workload identity / instance credentials). */}}
{{- define "imgproc.s3.secretName" -}}
{{- if .Values.objectStore.enabled }}
{{- default (include "imgproc.objectStoreName" .) .Values.objectStore.existingSecret }}
{{- else }}
{{- .Values.storage.s3.existingSecret }}
{{- end }}
{{- end }}

{{/* The TCP port of the store, for the NetworkPolicies: the bundled store's container port, or
the endpoint URL's port (443 for https and for AWS, 80 for http). */}}
{{- define "imgproc.s3.port" -}}
{{- if .Values.objectStore.enabled }}7070
{{- else if .Values.storage.s3.endpoint }}
{{- $url := urlParse .Values.storage.s3.endpoint }}
{{- $hostport := splitList ":" $url.host }}
{{- if gt (len $hostport) 1 }}{{ last $hostport }}{{ else if eq $url.scheme "http" }}80{{ else }}443{{ end }}
{{- else }}443
{{- end }}
{{- end }}

{{/* env of API and worker containers: the access keys through the standard AWS chain. */}}
{{- define "imgproc.env.storage" -}}
{{- if eq (include "imgproc.storageBackend" .) "s3" }}
{{- $secret := include "imgproc.s3.secretName" . }}
{{- if $secret }}
- name: AWS_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ .Values.storage.s3.accessKeyIdKey }}
- name: AWS_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ .Values.storage.s3.secretAccessKeyKey }}
{{- end }}
{{- end }}
{{- end }}

{{/* volumeMounts / volumes of API and worker pods for storage: the shared claim (filesystem),
or only the CA bundle if one is given (s3). */}}
{{- define "imgproc.storageVolumeMounts" -}}
{{- if eq (include "imgproc.storageBackend" .) "filesystem" }}
- name: storage
  mountPath: /data
{{- else if .Values.storage.s3.caBundle.secretName }}
- name: s3-ca
  mountPath: /etc/imgproc/s3-ca
  readOnly: true
{{- end }}
{{- end }}

{{- define "imgproc.storageVolumes" -}}
{{- if eq (include "imgproc.storageBackend" .) "filesystem" }}
- name: storage
  persistentVolumeClaim:
    claimName: {{ include "imgproc.storageClaimName" . }}
{{- else if .Values.storage.s3.caBundle.secretName }}
- name: s3-ca
  secret:
    secretName: {{ .Values.storage.s3.caBundle.secretName }}
    items:
      - key: {{ .Values.storage.s3.caBundle.key }}
        path: ca.pem
{{- end }}
{{- end }}

{{/* Name of the shared storage claim (created or existing). */}}
{{- define "imgproc.storageClaimName" -}}
{{- default (include "imgproc.componentName" (dict "root" . "component" "storage")) .Values.persistence.existingClaim }}
{{- end }}

{{/* ---------------------------------------------------------------------------------------
Non-secret settings. One definition feeds both the ConfigMap (API, worker, Flower, operator)
and the inline env of the migration Job, which runs as a pre-install hook before the
ConfigMap exists.
--------------------------------------------------------------------------------------- */}}
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
IMGPROC_WORKER_CONCURRENCY: {{ .Values.worker.concurrency | quote }}
IMGPROC_TASK_SOFT_TIME_LIMIT: {{ $c.taskSoftTimeLimit | quote }}
IMGPROC_TASK_TIME_LIMIT: {{ $c.taskTimeLimit | quote }}
IMGPROC_VISIBILITY_TIMEOUT: {{ $c.visibilityTimeout | quote }}
IMGPROC_MAX_TASK_ATTEMPTS: {{ $c.maxTaskAttempts | quote }}
IMGPROC_WORKER_HEARTBEAT_FILE: /tmp/worker-heartbeat
IMGPROC_FLOWER_PORT: "5555"
IMGPROC_FLOWER_URL_PREFIX: flower
IMGPROC_OPERATOR_HEALTH_PORT: {{ .Values.autoscaler.operator.healthPort | quote }}
IMGPROC_OPERATOR_METRICS_PORT: {{ .Values.autoscaler.operator.metricsPort | quote }}
IMGPROC_LOG_LEVEL: {{ $c.logLevel | quote }}
IMGPROC_LOG_FORMAT: {{ $c.logFormat | quote }}
{{- range $name, $value := $c.extraEnv }}
{{ $name }}: {{ $value | toString | quote }}
{{- end }}
{{- end }}

{{/* ---------------------------------------------------------------------------------------
Secrets. Generated values are created once and then read back from the live Secret with
`lookup` on every upgrade, so they never change. (`helm template` and client-side dry runs
cannot look up and print fresh random values; that is expected.)
--------------------------------------------------------------------------------------- */}}

{{/* Secret with webhook-secret and flower-basic-auth. */}}
{{- define "imgproc.appSecretName" -}}
{{- default (include "imgproc.fullname" .) .Values.secrets.existingSecret }}
{{- end }}

{{/* Returns the decoded value of key in the live Secret, or a fresh one; call with
(dict "root" $ "secret" name "key" key "generate" value). */}}
{{- define "imgproc.keptSecretValue" -}}
{{- $live := lookup "v1" "Secret" .root.Release.Namespace .secret }}
{{- if and $live $live.data (hasKey $live.data .key) }}
{{- index $live.data .key | b64dec }}
{{- else }}
{{- .generate }}
{{- end }}
{{- end }}

{{/* Objects of the bundled subcharts, named as the subcharts name them (their
"postgresql.fullname" / "redis.fullname"); tests/charts checks that every reference resolves. */}}
{{- define "imgproc.subchartFullname" -}}
{{- $values := index .root.Values .chart }}
{{- if $values.fullnameOverride }}
{{- $values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .chart $values.nameOverride }}
{{- if contains $name .root.Release.Name }}
{{- .root.Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .root.Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "imgproc.postgresql.fullname" -}}
{{- include "imgproc.subchartFullname" (dict "root" . "chart" "postgresql") }}
{{- end }}

{{/* Mirrors the subchart's "postgresql.readFullname": the read replicas' Service. */}}
{{- define "imgproc.postgresql.readFullname" -}}
{{- printf "%s-read" (include "imgproc.postgresql.fullname" . | trunc 58 | trimSuffix "-") }}
{{- end }}

{{- define "imgproc.redis.fullname" -}}
{{- include "imgproc.subchartFullname" (dict "root" . "chart" "redis") }}
{{- end }}

{{/* Secret the chart creates for external database/Redis credentials given as values. */}}
{{- define "imgproc.externalSecretName" -}}
{{- include "imgproc.componentName" (dict "root" . "component" "external") }}
{{- end }}

{{/* Short-lived hook Secret with the same credentials for the migration Job: it runs before
the release's own Secret exists (pre-install) or is updated (pre-upgrade). */}}
{{- define "imgproc.migrationsSecretName" -}}
{{- include "imgproc.componentName" (dict "root" . "component" "migrations") }}
{{- end }}

{{/* True ("true"/"") when the external database credentials come from values, i.e. the chart
has to store them in a Secret. */}}
{{- define "imgproc.externalDatabase.fromValues" -}}
{{- $db := .Values.externalDatabase }}
{{- if and (not .Values.postgresql.enabled) (or $db.url $db.replicaUrl (and $db.password (not $db.existingSecret))) }}true{{ end }}
{{- end }}

{{- define "imgproc.externalRedis.fromValues" -}}
{{- $r := .Values.externalRedis }}
{{- if and (not .Values.redis.enabled) (or $r.url (and $r.password (not $r.existingSecret))) }}true{{ end }}
{{- end }}

{{/* Render-time checks of combinations the schema cannot express. */}}
{{- define "imgproc.validate" -}}
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

{{/* ---------------------------------------------------------------------------------------
Connection URLs. Passwords stay in Secrets: the container gets the password as its own
variable and Kubernetes substitutes $(VAR) into the URL (dependent environment variables), so
no password is written into a pod spec. Call with (dict "root" $ "hook" true|false); hook=true
is the migration Job, which reads values-provided credentials from its hook Secret.
--------------------------------------------------------------------------------------- */}}
{{- define "imgproc.env.database" -}}
{{- $root := .root }}
{{- if $root.Values.postgresql.enabled }}
{{- $pg := $root.Values.postgresql }}
- name: DATABASE_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ default (include "imgproc.postgresql.fullname" $root) $pg.auth.existingSecret }}
      key: {{ $pg.auth.secretKeys.userPasswordKey }}
- name: IMGPROC_DATABASE_URL
  value: {{ printf "postgresql+psycopg2://%s:$(DATABASE_PASSWORD)@%s:%v/%s" $pg.auth.username (include "imgproc.postgresql.fullname" $root) $pg.service.port $pg.auth.database | quote }}
{{- else }}
{{- $db := $root.Values.externalDatabase }}
{{- $chartSecret := ternary (include "imgproc.migrationsSecretName" $root) (include "imgproc.externalSecretName" $root) (eq .hook true) }}
{{- if $db.url }}
- name: IMGPROC_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ $chartSecret }}
      key: database-url
{{- else if or $db.existingSecret $db.password }}
- name: DATABASE_PASSWORD
  valueFrom:
    secretKeyRef:
      {{- if $db.existingSecret }}
      name: {{ $db.existingSecret }}
      key: {{ $db.existingSecretPasswordKey }}
      {{- else }}
      name: {{ $chartSecret }}
      key: database-password
      {{- end }}
- name: IMGPROC_DATABASE_URL
  value: {{ printf "postgresql+psycopg2://%s:$(DATABASE_PASSWORD)@%s:%v/%s" $db.user $db.host $db.port $db.database | quote }}
{{- else }}
- name: IMGPROC_DATABASE_URL
  value: {{ printf "postgresql+psycopg2://%s@%s:%v/%s" $db.user $db.host $db.port $db.database | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/* IMGPROC_DATABASE_REPLICA_URL for the API container (status reads; app.core.replica):
the bundled read replicas' Service, or externalDatabase.replicaUrl/replicaHost. Comes after
imgproc.env.database, whose DATABASE_PASSWORD it reuses. Nothing without a replica. */}}
{{- define "imgproc.env.databaseReplica" -}}
{{- if .Values.postgresql.enabled }}
{{- $pg := .Values.postgresql }}
{{- if gt (int $pg.readReplicas.replicaCount) 0 }}
- name: IMGPROC_DATABASE_REPLICA_URL
  value: {{ printf "postgresql+psycopg2://%s:$(DATABASE_PASSWORD)@%s:%v/%s" $pg.auth.username (include "imgproc.postgresql.readFullname" .) $pg.service.port $pg.auth.database | quote }}
{{- end }}
{{- else }}
{{- $db := .Values.externalDatabase }}
{{- if $db.replicaUrl }}
- name: IMGPROC_DATABASE_REPLICA_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "imgproc.externalSecretName" . }}
      key: database-replica-url
{{- else if $db.replicaHost }}
- name: IMGPROC_DATABASE_REPLICA_URL
  value: {{ printf "postgresql+psycopg2://%s%s@%s:%v/%s" $db.user (ternary ":$(DATABASE_PASSWORD)" "" (or (ne $db.existingSecret "") (ne $db.password ""))) $db.replicaHost $db.port $db.database | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/* Where the broker is: dict with host, port, db, secretName, secretKey (secretName "" = no
password) and, with the bundled Redis's sentinels, sentinels (list of "host:port", the Service
of every sentinel pod) and masterName. Used for IMGPROC_BROKER_URL /
IMGPROC_REDIS_SENTINELS, the WorkerAutoscaler and the KEDA trigger. */}}
{{- define "imgproc.redis.endpoint" -}}
{{- if .Values.redis.enabled }}
{{- $r := .Values.redis }}
{{- $full := include "imgproc.redis.fullname" . }}
host: {{ $full }}
port: {{ $r.service.port }}
db: 0
secretName: {{ default $full $r.auth.existingSecret }}
secretKey: {{ $r.auth.existingSecretPasswordKey }}
{{- if $r.sentinel.enabled }}
masterName: {{ $r.sentinel.masterName | quote }}
sentinels:
{{- range $i := until (int $r.sentinel.replicaCount) }}
  - {{ printf "%s-sentinel-%d.%s.svc.%s:%v" $full $i $.Release.Namespace $r.clusterDomain $r.sentinel.port | quote }}
{{- end }}
{{- end }}
{{- else if .Values.externalRedis.url }}
{{- $url := urlParse .Values.externalRedis.url }}
{{- $hostport := splitList ":" $url.host }}
{{- if and (contains "%" $url.userinfo) (ne (include "imgproc.workerScaler" .) "") }}
{{- fail "externalRedis.url: the autoscaler cannot use percent-encoded credentials from the URL as they are; give externalRedis.host/port/db with password or existingSecret instead" }}
{{- end }}
host: {{ first $hostport }}
port: {{ if gt (len $hostport) 1 }}{{ last $hostport }}{{ else }}6379{{ end }}
db: {{ trimPrefix "/" $url.path | default "0" }}
{{- /* redis://user:password@host: an ACL user, which the operator must log in as too. */}}
username: {{ if contains ":" $url.userinfo }}{{ regexReplaceAll ":.*$" $url.userinfo "" | quote }}{{ else }}""{{ end }}
{{- /* The password inside the URL is split out into the chart's Secret for consumers that
       take host/port plus a secret reference (operator, KEDA). */}}
secretName: {{ if $url.userinfo }}{{ include "imgproc.externalSecretName" . }}{{ end }}
secretKey: redis-password
{{- else }}
{{- $r := .Values.externalRedis }}
host: {{ $r.host }}
port: {{ $r.port }}
db: {{ $r.db }}
secretName: {{ if $r.existingSecret }}{{ $r.existingSecret }}{{ else if $r.password }}{{ include "imgproc.externalSecretName" . }}{{ end }}
secretKey: {{ if $r.existingSecret }}{{ $r.existingSecretPasswordKey }}{{ else }}redis-password{{ end }}
{{- end }}
{{- end }}

{{- define "imgproc.env.broker" -}}
{{- if and (not .Values.redis.enabled) .Values.externalRedis.url }}
- name: IMGPROC_BROKER_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "imgproc.externalSecretName" . }}
      key: redis-url
{{- else }}
{{- $ep := include "imgproc.redis.endpoint" . | fromYaml }}
{{- if $ep.secretName }}
- name: REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $ep.secretName }}
      key: {{ $ep.secretKey }}
- name: IMGPROC_BROKER_URL
  value: {{ printf "redis://:$(REDIS_PASSWORD)@%s:%v/%v" $ep.host $ep.port $ep.db | quote }}
{{- else }}
- name: IMGPROC_BROKER_URL
  value: {{ printf "redis://%s:%v/%v" $ep.host $ep.port $ep.db | quote }}
{{- end }}
{{- with $ep.sentinels }}
{{- /* The master comes from the sentinels (they share the Redis password); BROKER_URL then
       gives only the password and database. */}}
- name: IMGPROC_REDIS_SENTINELS
  value: {{ join "," . | quote }}
- name: IMGPROC_REDIS_SENTINEL_MASTER
  value: {{ $ep.masterName | quote }}
- name: IMGPROC_REDIS_SENTINEL_PASSWORD
  value: "$(REDIS_PASSWORD)"
{{- end }}
{{- end }}
{{- end }}

{{- define "imgproc.env.webhookSecret" -}}
- name: IMGPROC_WEBHOOK_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ include "imgproc.appSecretName" . }}
      key: webhook-secret
{{- end }}

{{/* Which autoscaler owns the worker's replica count: "keda", "operator" or "". */}}
{{- define "imgproc.workerScaler" -}}
{{- if .Values.keda.enabled }}keda{{ else if .Values.autoscaler.enabled }}operator{{ end }}
{{- end }}

{{/* autoscaler.tasksPerReplica, defaulting to the worker concurrency. */}}
{{- define "imgproc.tasksPerReplica" -}}
{{- .Values.autoscaler.tasksPerReplica | default .Values.worker.concurrency }}
{{- end }}

{{/* Migration hook phases: the bundled database only exists after install. */}}
{{- define "imgproc.migrationHookPhases" -}}
{{- if .Values.postgresql.enabled }}post-install,pre-upgrade{{ else }}pre-install,pre-upgrade{{ end }}
{{- end }}

{{/* data: of the Secret holding external database credentials given as values. */}}
{{- define "imgproc.externalDatabaseSecretData" -}}
{{- if include "imgproc.externalDatabase.fromValues" . }}
{{- $db := .Values.externalDatabase }}
{{- if $db.url }}
database-url: {{ $db.url | b64enc | quote }}
{{- else if and $db.password (not $db.existingSecret) }}
database-password: {{ $db.password | b64enc | quote }}
{{- end }}
{{- with $db.replicaUrl }}
database-replica-url: {{ . | b64enc | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/* data: of the Secret holding external Redis credentials given as values. A URL's password
is also stored on its own (redis-password) for the operator and KEDA. */}}
{{- define "imgproc.externalRedisSecretData" -}}
{{- if include "imgproc.externalRedis.fromValues" . }}
{{- $r := .Values.externalRedis }}
{{- if $r.url }}
redis-url: {{ $r.url | b64enc | quote }}
{{- $userinfo := (urlParse $r.url).userinfo }}
{{- if contains ":" $userinfo }}
redis-password: {{ regexReplaceAll "^[^:]*:" $userinfo "" | b64enc | quote }}
{{- end }}
{{- else }}
redis-password: {{ $r.password | b64enc | quote }}
{{- end }}
{{- end }}
{{- end }}
