{{/* Storage: the backend, the S3 endpoint/bucket/keys, the pods' storage env and volumes, the claim. */}}

{{/* "filesystem" (a shared claim at /data) or "s3" (a bucket; the bundled objectStore implies
it). Everything derives from these helpers so that the ConfigMap, the pods' volumes and env,
and the NetworkPolicies always agree. */}}

{{- define "imgproc.storageBackend" -}}
{{- if .Values.objectStore.enabled }}s3{{ else }}{{ .Values.storage.backend }}{{ end }}
{{- end }}

{{- define "imgproc.objectStoreName" -}}
{{- include "imgproc.componentName" (dict "root" . "component" "object-store") }}
{{- end }}

{{/* The in-cluster endpoint API and workers use ("" = AWS). */}}
{{- define "imgproc.s3.endpoint" -}}
{{- if .Values.objectStore.enabled }}
{{- printf "http://%s:%v" (include "imgproc.objectStoreName" .) .Values.objectStore.service.port }}
{{- else }}
{{- .Values.storage.s3.endpoint }}
{{- end }}
{{- end }}

{{- define "imgproc.s3.bucket" -}}
{{- if .Values.objectStore.enabled }}{{ .Values.objectStore.bucket }}{{ else }}{{ .Values.storage.s3.bucket }}{{ end }}
{{- end }}

{{/* Secret with the access key pair ("" = none: workload identity / instance credentials). */}}
{{- define "imgproc.s3.secretName" -}}
{{- if .Values.objectStore.enabled }}
{{- default (include "imgproc.objectStoreName" .) .Values.objectStore.existingSecret }}
{{- else }}
{{- .Values.storage.s3.existingSecret }}
{{- end }}
{{- end }}

{{/* The TCP port of the store, for the NetworkPolicies: the bundled store's container port, or
the endpoint URL's port (443 for https and for AWS, 80 for http). */}}
{{- define "imgproc.s3.port" -}}
{{- if .Values.objectStore.enabled }}7070
{{- else if .Values.storage.s3.endpoint }}
{{- $url := urlParse .Values.storage.s3.endpoint }}
{{- $hostport := splitList ":" $url.host }}
{{- if gt (len $hostport) 1 }}{{ last $hostport }}{{ else if eq $url.scheme "http" }}80{{ else }}443{{ end }}
{{- else }}443
{{- end }}
{{- end }}

{{/* env of API and worker containers: the access keys through the standard AWS chain. */}}
{{- define "imgproc.env.storage" -}}
{{- if eq (include "imgproc.storageBackend" .) "s3" }}
{{- $secret := include "imgproc.s3.secretName" . }}
{{- if $secret }}
- name: AWS_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ .Values.storage.s3.accessKeyIdKey }}
- name: AWS_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ .Values.storage.s3.secretAccessKeyKey }}
{{- end }}
{{- end }}
{{- end }}

{{/* volumeMounts / volumes of API and worker pods for storage: the shared claim (filesystem),
or only the CA bundle if one is given (s3). */}}
{{- define "imgproc.storageVolumeMounts" -}}
{{- if eq (include "imgproc.storageBackend" .) "filesystem" }}
- name: storage
  mountPath: /data
{{- else if .Values.storage.s3.caBundle.secretName }}
- name: s3-ca
  mountPath: /etc/imgproc/s3-ca
  readOnly: true
{{- end }}
{{- end }}

{{- define "imgproc.storageVolumes" -}}
{{- if eq (include "imgproc.storageBackend" .) "filesystem" }}
- name: storage
  persistentVolumeClaim:
    claimName: {{ include "imgproc.storageClaimName" . }}
{{- else if .Values.storage.s3.caBundle.secretName }}
- name: s3-ca
  secret:
    secretName: {{ .Values.storage.s3.caBundle.secretName }}
    items:
      - key: {{ .Values.storage.s3.caBundle.key }}
        path: ca.pem
{{- end }}
{{- end }}

{{/* Name of the shared storage claim (created or existing). */}}
{{- define "imgproc.storageClaimName" -}}
{{- default (include "imgproc.componentName" (dict "root" . "component" "storage")) .Values.persistence.existingClaim }}
{{- end }}
