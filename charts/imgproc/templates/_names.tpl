{{/* Object names: the chart's name and fullname, component names, ServiceAccount, subcharts. */}}

{{/* Every object is named "<fullname>-<suffix>", the suffix being its component (api, worker,
flower, operator, migrations, smoke-test, object-store) or what it is (storage claim, external
Secret, NetworkPolicies), except the ConfigMap, app Secret and ServiceAccount ("<fullname>").
The bundled subcharts name their own objects. */}}

{{/* Chart name, overridable with nameOverride. */}}
{{- define "imgproc.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* "<release>-<name>", or just the release name when it already contains the chart name. */}}
{{- define "imgproc.fullname" -}}
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

{{/* Name of one component's objects; call with (dict "root" $ "component" "api"). */}}
{{- define "imgproc.componentName" -}}
{{- printf "%s-%s" (include "imgproc.fullname" .root) .component | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* "<chart>-<version>" for the helm.sh/chart label. */}}
{{- define "imgproc.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "imgproc.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "imgproc.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Objects of the bundled subcharts, named as the subcharts name them (their
"postgresql.fullname" / "redis.fullname"); tests/unit/charts checks that every reference resolves. */}}
{{- define "imgproc.subchartFullname" -}}
{{- $values := index .root.Values .chart }}
{{- if $values.fullnameOverride }}
{{- $values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .chart $values.nameOverride }}
{{- if contains $name .root.Release.Name }}
{{- .root.Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .root.Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}
