{{/* The chart's Secrets: the app Secret, kept generated values, external and hook credentials. */}}

{{/* Generated values are created once and then read back from the live Secret with `lookup`
on every upgrade, so they never change. (`helm template` and client-side dry runs cannot look
up and print fresh random values; that is expected.) */}}

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

{{- define "imgproc.env.webhookSecret" -}}
- name: IMGPROC_WEBHOOK_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ include "imgproc.appSecretName" . }}
      key: webhook-secret
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
