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

{{/* A Go duration ("1m30s", "500ms") in milliseconds, as the exporter reads it. */}}
{{- define "net-exporter.durationMs" -}}
{{- $scale := dict "ns" 0.000001 "us" 0.001 "µs" 0.001 "ms" 1.0 "s" 1000.0 "m" 60000.0 "h" 3600000.0 -}}
{{- $total := 0.0 -}}
{{- range regexFindAll "[0-9]+(\\.[0-9]*)?(ns|us|µs|ms|s|m|h)" (toString .) -1 -}}
{{- $number := regexFind "^[0-9]+(\\.[0-9]*)?" . | float64 -}}
{{- $unit := regexReplaceAll "^[0-9]+(\\.[0-9]*)?" . "" -}}
{{- $total = addf $total (mulf $number (get $scale $unit)) -}}
{{- end -}}
{{- $total -}}
{{- end -}}

{{/*
Refuses at render time what the exporter would refuse at start (exit 2, and a
crash-looping DaemonSet): a probe timeout not below its interval; and alert
ratios out of range, which the schema cannot check when --set gives them as text.
*/}}
{{- define "net-exporter.checkValues" -}}
{{- range $collector := list "dns" "network" "ntp" -}}
{{- $values := index $.Values $collector -}}
{{- $timeout := include "net-exporter.durationMs" $values.timeout | float64 -}}
{{- $interval := include "net-exporter.durationMs" $values.interval | float64 -}}
{{- if ge $timeout $interval -}}
{{- fail (printf "%s.timeout=%s is not below %s.interval=%s: the exporter would refuse to start" $collector (toString $values.timeout) $collector (toString $values.interval)) -}}
{{- end -}}
{{- end -}}
{{- if le (float64 .Values.prometheusRule.clockSkewSeconds) 0.0 -}}
{{- fail (printf "prometheusRule.clockSkewSeconds=%v must be above 0" .Values.prometheusRule.clockSkewSeconds) -}}
{{- end -}}
{{- range $name := list "dnsErrorRatio" "quorum" -}}
{{- $ratio := index $.Values.prometheusRule $name | float64 -}}
{{- if or (le $ratio 0.0) (gt $ratio 1.0) -}}
{{- fail (printf "prometheusRule.%s=%v must be above 0 and at most 1" $name (index $.Values.prometheusRule $name)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
