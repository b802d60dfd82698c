{{/* The imgproc image: its reference (tag or digest) and the tag behind the version label. */}}

{{/* The image tag actually deployed; also the app.kubernetes.io/version label. */}}
{{- define "imgproc.imageTag" -}}
{{- default .Chart.AppVersion .Values.image.tag }}
{{- end }}

{{/* "repository@digest" when a digest is given, else "repository:tag". */}}
{{- define "imgproc.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (include "imgproc.imageTag" .) }}
{{- end }}
{{- end }}
