{{/* Pod building blocks every imgproc pod shares: security contexts and the /tmp emptyDir. */}}

{{/* Shared by every imgproc pod (API, worker, Flower, operator, migrations, smoke test, object
store), so all of them meet the restricted Pod Security Standard the same way. */}}

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
