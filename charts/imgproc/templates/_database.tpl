{{/* The database: the bundled PostgreSQL's Service names, the DATABASE_URL / REPLICA_URL env. */}}

{{- define "imgproc.postgresql.fullname" -}}
{{- include "imgproc.subchartFullname" (dict "root" . "chart" "postgresql") }}
{{- end }}

{{/* Mirrors the subchart's "postgresql.readFullname": the read replicas' Service. */}}
{{- define "imgproc.postgresql.readFullname" -}}
{{- printf "%s-read" (include "imgproc.postgresql.fullname" . | trunc 58 | trimSuffix "-") }}
{{- end }}

{{/* Connection URLs (here and in _redis.tpl). Passwords stay in Secrets: the container gets the
password as its own variable and Kubernetes substitutes $(VAR) into the URL (dependent
environment variables), so no password is written into a pod spec. Call with
(dict "root" $ "hook" true|false); hook=true is the migration Job, which reads values-provided
credentials from its hook Secret. */}}

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
