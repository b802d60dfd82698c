{{/* Worker autoscaling: which scaler (operator or KEDA) owns the replicas, the load per pod. */}}

{{/* Which autoscaler owns the worker's replica count: "keda", "operator" or "". */}}
{{- define "imgproc.workerScaler" -}}
{{- if .Values.keda.enabled }}keda{{ else if .Values.autoscaler.enabled }}operator{{ end }}
{{- end }}

{{/* autoscaler.tasksPerReplica, defaulting to the worker concurrency. */}}
{{- define "imgproc.tasksPerReplica" -}}
{{- .Values.autoscaler.tasksPerReplica | default .Values.worker.concurrency }}
{{- end }}
