{{/* Building blocks of the NetworkPolicies. Peers are matched by the same labels the
Deployments select on; subchart pods by the labels the subcharts give them. */}}

{{/* A peer for pods of one imgproc component; (dict "root" $ "component" "worker"). */}}
{{- define "imgproc.np.componentPeer" -}}
- podSelector:
    matchLabels:
      {{- include "imgproc.componentSelectorLabels" . | nindent 6 }}
{{- end }}

{{/* Selector of the bundled subchart's pods; (dict "root" $ "chart" "postgresql" "component" "primary"). */}}
{{- define "imgproc.np.subchartSelector" -}}
matchLabels:
  app.kubernetes.io/name: {{ default .chart (index .root.Values .chart).nameOverride }}
  app.kubernetes.io/instance: {{ .root.Release.Name }}
  {{- with .component }}
  app.kubernetes.io/component: {{ . }}
  {{- end }}
{{- end }}

{{/* Egress to cluster DNS. */}}
{{- define "imgproc.np.egressDNS" -}}
- to:
    - namespaceSelector:
        {{- toYaml .Values.networkPolicy.dns.namespaceSelector | nindent 8 }}
      podSelector:
        {{- toYaml .Values.networkPolicy.dns.podSelector | nindent 8 }}
  ports:
    - {protocol: UDP, port: 53}
    - {protocol: TCP, port: 53}
{{- end }}

{{/* Egress to the database: the bundled PostgreSQL pods, or the external port anywhere (its
address is outside the cluster and unknown to the chart). Policies match the pod's port, not the
Service's, hence the subcharts' fixed container ports 5432 and 6379. */}}
{{- define "imgproc.np.egressDatabase" -}}
{{- if .Values.postgresql.enabled }}
- to:
    - podSelector:
        {{- include "imgproc.np.subchartSelector" (dict "root" . "chart" "postgresql" "component" "primary") | nindent 8 }}
  ports:
    - {protocol: TCP, port: 5432}
{{- else }}
{{- $port := .Values.externalDatabase.port }}
{{- with .Values.externalDatabase.url }}
{{- $hostport := splitList ":" (urlParse .).host }}
{{- $port = ternary (last $hostport) "5432" (gt (len $hostport) 1) }}
{{- end }}
- ports:
    - {protocol: TCP, port: {{ $port | int }}}
{{- end }}
{{- end }}

{{/* Egress to the read replicas (the API's status reads): the bundled replicas' pods, or the
port of externalDatabase.replicaUrl anywhere (replicaHost uses externalDatabase.port, which
imgproc.np.egressDatabase opens already). */}}
{{- define "imgproc.np.egressDatabaseReplica" -}}
{{- if .Values.postgresql.enabled }}
{{- if gt (int .Values.postgresql.readReplicas.replicaCount) 0 }}
- to:
    - podSelector:
        {{- include "imgproc.np.subchartSelector" (dict "root" . "chart" "postgresql" "component" "read-replica") | nindent 8 }}
  ports:
    - {protocol: TCP, port: 5432}
{{- end }}
{{- else if .Values.externalDatabase.replicaUrl }}
{{- $hostport := splitList ":" (urlParse .Values.externalDatabase.replicaUrl).host }}
- ports:
    - {protocol: TCP, port: {{ ternary (last $hostport) "5432" (gt (len $hostport) 1) | int }}}
{{- end }}
{{- end }}

{{/* Egress to the broker, same idea. */}}
{{- define "imgproc.np.egressBroker" -}}
{{- $ep := include "imgproc.redis.endpoint" . | fromYaml }}
{{- if and .Values.redis.enabled .Values.redis.sentinel.enabled }}
{{- /* Any Redis pod may be the master after a failover; the sentinels name it. */}}
- to:
    - podSelector:
        {{- include "imgproc.np.subchartSelector" (dict "root" . "chart" "redis") | nindent 8 }}
  ports:
    - {protocol: TCP, port: 6379}
    - {protocol: TCP, port: {{ .Values.redis.sentinel.port | int }}}
{{- else if .Values.redis.enabled }}
- to:
    - podSelector:
        {{- include "imgproc.np.subchartSelector" (dict "root" . "chart" "redis" "component" "master") | nindent 8 }}
  ports:
    - {protocol: TCP, port: 6379}
{{- else }}
- ports:
    - {protocol: TCP, port: {{ $ep.port | int }}}
{{- end }}
{{- end }}

{{/* Egress to the object store (storage.backend=s3): the bundled store's pods, or the
endpoint's port anywhere (AWS or an external store: addresses unknown to the chart). Nothing
with the file-system backend. */}}
{{- define "imgproc.np.egressObjectStore" -}}
{{- if .Values.objectStore.enabled }}
- to:
    {{- include "imgproc.np.componentPeer" (dict "root" . "component" "object-store") | trim | nindent 4 }}
  ports:
    - {protocol: TCP, port: 7070}
{{- else if eq (include "imgproc.storageBackend" .) "s3" }}
- ports:
    - {protocol: TCP, port: {{ include "imgproc.s3.port" . | int }}}
{{- end }}
{{- end }}

{{/* Egress to the trace collector (tracing.enabled): the port of tracing.endpoint, to
networkPolicy.tracingCollectors or, with none given, anywhere. */}}
{{- define "imgproc.np.egressTracing" -}}
{{- if .Values.tracing.enabled }}
{{- $url := urlParse .Values.tracing.endpoint }}
{{- $hostport := splitList ":" $url.host }}
{{- $port := ternary (last $hostport) (ternary "443" "80" (eq $url.scheme "https")) (gt (len $hostport) 1) }}
{{- with .Values.networkPolicy.tracingCollectors }}
- to:
    {{- toYaml . | nindent 4 }}
  ports:
    - {protocol: TCP, port: {{ $port | int }}}
{{- else }}
- ports:
    - {protocol: TCP, port: {{ $port | int }}}
{{- end }}
{{- end }}
{{- end }}

{{/* The ingress controller as a peer (namespace and pod selector together). */}}
{{- define "imgproc.np.ingressControllerPeer" -}}
- namespaceSelector:
    {{- toYaml .Values.networkPolicy.ingressController.namespaceSelector | nindent 4 }}
  podSelector:
    {{- toYaml .Values.networkPolicy.ingressController.podSelector | nindent 4 }}
{{- end }}

{{/* Ingress from networkPolicy.metricsScrapers (Prometheus) to a metrics port; nothing when
none is configured. (dict "root" $ "port" <port>). */}}
{{- define "imgproc.np.ingressMetricsScrapers" -}}
{{- with .root.Values.networkPolicy.metricsScrapers }}
- from:
    {{- toYaml . | nindent 4 }}
  ports:
    - {protocol: TCP, port: {{ $.port }}}
{{- end }}
{{- end }}

{{/* Standard metadata of one component's policy. */}}
{{- define "imgproc.np.metadata" -}}
metadata:
  name: {{ include "imgproc.componentName" . }}
  labels:
    {{- include "imgproc.componentLabels" . | nindent 4 }}
{{- end }}
