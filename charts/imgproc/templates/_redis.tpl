{{/* The broker: the bundled Redis's name, where the broker is (sentinels too), BROKER_URL env. */}}

{{- define "imgproc.redis.fullname" -}}
{{- include "imgproc.subchartFullname" (dict "root" . "chart" "redis") }}
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
