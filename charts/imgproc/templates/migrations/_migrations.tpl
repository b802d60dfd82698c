{{/* The migration hook's helpers (job.yaml, secret.yaml; NOTES.txt reports the phases). */}}

{{/* Migration hook phases: the bundled database only exists after install. */}}
{{- define "imgproc.migrationHookPhases" -}}
{{- if .Values.postgresql.enabled }}post-install,pre-upgrade{{ else }}pre-install,pre-upgrade{{ end }}
{{- end }}
