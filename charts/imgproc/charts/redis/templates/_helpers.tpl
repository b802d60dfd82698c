{{/* Named templates are global across a chart and its subcharts: everything here is
prefixed "redis.". The parent chart mirrors "redis.fullname" (imgproc.subchartFullname). */}}

{{- define "redis.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "redis.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Selector labels of one role; (dict "root" $ "component" "master"|"replica"). */}}
{{- define "redis.selectorLabels" -}}
app.kubernetes.io/name: {{ include "redis.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Labels of one role; (dict "root" $ "component" "master"|"replica"). */}}
{{- define "redis.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "redis.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Values.image.tag | default .root.Chart.AppVersion | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/part-of: {{ .root.Values.global.partOf | default (include "redis.name" .root) }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
{{- end }}

{{- define "redis.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{- define "redis.secretName" -}}
{{- default (include "redis.fullname" .) .Values.auth.existingSecret }}
{{- end }}

{{/* PING must answer PONG (not NOAUTH, not LOADING); REDISCLI_AUTH carries the password. */}}
{{- define "redis.pingCommand" -}}
["sh", "-c", "test \"$(redis-cli -h 127.0.0.1 -p 6379 ping)\" = PONG"]
{{- end }}

{{/* The same for a sentinel (its port). */}}
{{- define "redis.sentinelPingCommand" -}}
["sh", "-c", "test \"$(redis-cli -h 127.0.0.1 -p {{ .Values.sentinel.port }} ping)\" = PONG"]
{{- end }}

{{/* Everything one Redis StatefulSet needs; (dict "root" $ "component" "master"|"replica"
"spec" .Values.master|.Values.replica "replicas" N). */}}
{{- define "redis.statefulset" -}}
{{- $root := .root }}
{{- $spec := .spec }}
{{- $ctx := dict "root" $root "component" .component }}
{{- $name := printf "%s-%s" (include "redis.fullname" $root) (ternary "master" "replicas" (eq .component "master")) }}
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: {{ $name }}
  labels:
    {{- include "redis.labels" $ctx | nindent 4 }}
spec:
  replicas: {{ .replicas }}
  serviceName: {{ $name }}-headless
  selector:
    matchLabels:
      {{- include "redis.selectorLabels" $ctx | nindent 6 }}
  updateStrategy:
    type: RollingUpdate
  template:
    metadata:
      labels:
        {{- include "redis.labels" $ctx | nindent 8 }}
      annotations:
        checksum/config: {{ include (print $root.Template.BasePath "/configmap.yaml") $root | sha256sum }}
        {{- if $root.Values.sentinel.enabled }}
        checksum/scripts: {{ include (print $root.Template.BasePath "/sentinel-scripts.yaml") $root | sha256sum }}
        {{- end }}
    spec:
      automountServiceAccountToken: false
      # No <SERVICE>_PORT=tcp://... variables for every Service in the namespace: nothing
      # reads them, and they can clash with an image's own settings.
      enableServiceLinks: false
      {{- with $root.Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      securityContext:
        {{- toYaml $root.Values.podSecurityContext | nindent 8 }}
      # SIGTERM makes Redis flush the AOF and exit.
      terminationGracePeriodSeconds: 30
      containers:
        - name: redis
          image: {{ include "redis.image" $root | quote }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          securityContext:
            {{- toYaml $root.Values.containerSecurityContext | nindent 12 }}
          # The password reaches redis-server on stdin ("-" = read more config from stdin), not
          # on its command line. The command-line options come last and win over the files, so
          # the broker's durability settings cannot be overridden by extraConfig.
          {{- if $root.Values.sentinel.enabled }}
          # The role (master, or replica of whom) comes from the sentinels: scripts ConfigMap.
          command: ["/bin/sh", "/scripts/start-redis.sh", {{ .component | quote }}]
          {{- else }}
          command: ["/bin/sh", "-c"]
          args:
            - |
              exec redis-server /etc/redis/redis.conf --appendonly yes --maxmemory-policy noeviction - <<EOF
              requirepass "${REDISCLI_AUTH}"
              {{- if eq .component "replica" }}
              masterauth "${REDISCLI_AUTH}"
              replicaof {{ include "redis.fullname" $root }} {{ $root.Values.service.port }}
              replica-read-only yes
              {{- end }}
              EOF
          {{- end }}
          env:
            # Read by redis-cli (probes) and by the start command above.
            - name: REDISCLI_AUTH
              valueFrom:
                secretKeyRef:
                  name: {{ include "redis.secretName" $root }}
                  key: {{ $root.Values.auth.existingSecretPasswordKey }}
          ports:
            - name: redis
              containerPort: 6379
              protocol: TCP
          # Loading a large AOF answers LOADING for a while: the startup probe waits it out.
          startupProbe:
            exec:
              command: {{ include "redis.pingCommand" $root }}
            periodSeconds: 5
            timeoutSeconds: 5
            failureThreshold: 60
          livenessProbe:
            exec:
              command: {{ include "redis.pingCommand" $root }}
            periodSeconds: 10
            timeoutSeconds: 5
            failureThreshold: 3
          readinessProbe:
            exec:
              command: {{ include "redis.pingCommand" $root }}
            periodSeconds: 5
            timeoutSeconds: 5
            failureThreshold: 2
          resources:
            {{- toYaml $spec.resources | nindent 12 }}
          volumeMounts:
            - name: data
              mountPath: /data
            - name: config
              mountPath: /etc/redis
              readOnly: true
            - name: tmp
              mountPath: /tmp
            {{- if $root.Values.sentinel.enabled }}
            - name: scripts
              mountPath: /scripts
              readOnly: true
            {{- end }}
      volumes:
        - name: config
          configMap:
            name: {{ include "redis.fullname" $root }}
        {{- if $root.Values.sentinel.enabled }}
        - name: scripts
          configMap:
            name: {{ include "redis.fullname" $root }}-scripts
        {{- end }}
        # The shell keeps the here-document in /tmp.
        - name: tmp
          emptyDir:
            sizeLimit: 16Mi
        {{- if not $spec.persistence.enabled }}
        - name: data
          emptyDir: {}
        {{- end }}
      {{- with $spec.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $spec.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $spec.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
  {{- if $spec.persistence.enabled }}
  volumeClaimTemplates:
    - apiVersion: v1
      kind: PersistentVolumeClaim
      metadata:
        name: data
        labels:
          {{- include "redis.selectorLabels" $ctx | nindent 10 }}
      spec:
        accessModes:
          {{- toYaml $spec.persistence.accessModes | nindent 10 }}
        {{- if eq $spec.persistence.storageClass "-" }}
        storageClassName: ""
        {{- else if $spec.persistence.storageClass }}
        storageClassName: {{ $spec.persistence.storageClass | quote }}
        {{- end }}
        resources:
          requests:
            storage: {{ $spec.persistence.size }}
  {{- end }}
{{- end }}

{{/* ClusterIP + headless Service of one role; (dict "root" $ "component" "master"|"replica"). */}}
{{- define "redis.services" -}}
{{- $ctx := dict "root" .root "component" .component }}
{{- $base := include "redis.fullname" .root }}
{{- $client := ternary $base (printf "%s-replicas" $base) (eq .component "master") }}
{{- $governing := printf "%s-%s-headless" $base (ternary "master" "replicas" (eq .component "master")) }}
apiVersion: v1
kind: Service
metadata:
  name: {{ $client }}
  labels:
    {{- include "redis.labels" $ctx | nindent 4 }}
spec:
  type: ClusterIP
  selector:
    {{- include "redis.selectorLabels" $ctx | nindent 4 }}
  ports:
    - name: redis
      port: {{ ternary .root.Values.service.port 6379 (eq .component "master") }}
      targetPort: redis
      protocol: TCP
---
apiVersion: v1
kind: Service
metadata:
  name: {{ $governing }}
  labels:
    {{- include "redis.labels" $ctx | nindent 4 }}
spec:
  type: ClusterIP
  clusterIP: None
  publishNotReadyAddresses: true
  selector:
    {{- include "redis.selectorLabels" $ctx | nindent 4 }}
  ports:
    - name: redis
      port: 6379
      targetPort: redis
      protocol: TCP
{{- end }}
