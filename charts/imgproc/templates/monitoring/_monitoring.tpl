{{/* Building blocks of the monitoring objects (metrics.*): the metrics port, the labels every
scrape target carries, the PromQL selector of this release's series, a scrape endpoint. */}}

{{/* The name of the metrics port in API, worker and operator pods, their Services and the
monitors (they find the port by this name, never by number). */}}
{{- define "imgproc.metrics.portName" -}}
metrics
{{- end }}

{{/* The container port of API and worker pods with metrics.enabled (IMGPROC_METRICS_PORT, set in
the ConfigMap from the same value). */}}
{{- define "imgproc.metrics.containerPort" -}}
{{- if .Values.metrics.enabled }}
- name: {{ include "imgproc.metrics.portName" . }}
  containerPort: {{ .Values.metrics.port }}
  protocol: TCP
{{- end }}
{{- end }}

{{/* Pod labels copied onto every scraped series (sanitized: app_kubernetes_io_instance, ...):
the release's series are told apart from another release's in the same namespace by them, and
the alerts and the dashboard select on them. */}}
{{- define "imgproc.metrics.podTargetLabels" -}}
- app.kubernetes.io/instance
- app.kubernetes.io/component
{{- end }}

{{/* PromQL label matchers of this release's series. */}}
{{- define "imgproc.metrics.selector" -}}
namespace="{{ .Release.Namespace }}",app_kubernetes_io_instance="{{ .Release.Name }}"
{{- end }}

{{/* Metadata of one monitoring object; (dict "root" $ "component" "api" "labels" <extra labels>). */}}
{{- define "imgproc.metrics.metadata" -}}
metadata:
  name: {{ include "imgproc.componentName" . }}
  labels:
    {{- include "imgproc.componentLabels" . | nindent 4 }}
    {{- with .labels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end }}

{{/* The scrape settings of one endpoint, from metrics.serviceMonitor or metrics.podMonitor;
(dict "root" $ "monitor" <those values>). */}}
{{- define "imgproc.metrics.endpoint" -}}
port: {{ include "imgproc.metrics.portName" .root }}
path: /metrics
{{- with .monitor.interval }}
interval: {{ . }}
{{- end }}
{{- with .monitor.scrapeTimeout }}
scrapeTimeout: {{ . }}
{{- end }}
{{- with .monitor.relabelings }}
relabelings:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .monitor.metricRelabelings }}
metricRelabelings:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}
