{{/* Release full name, at most 63 characters. */}}
{{- define "net-exporter.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "net-exporter.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "net-exporter.labels" -}}
{{ include "net-exporter.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "net-exporter.serviceAccountName" -}}
{{- default (include "net-exporter.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{/* The latency buckets in force: network.buckets, or the exporter's defaults. */}}
{{- define "net-exporter.networkBuckets" -}}
{{- if .Values.network.buckets -}}
{{- toJson .Values.network.buckets -}}
{{- else -}}
[0.0005,0.001,0.0025,0.005,0.01,0.025,0.05,0.1,0.25,0.5,1,2.5,5,8]
{{- end -}}
{{- end -}}
