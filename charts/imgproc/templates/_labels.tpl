{{/* Labels: the common labels of every object and the (immutable) selector labels. */}}

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
