{{/* The name: nameOverride or the chart's, at most 63 characters. */}}
{{- define "net-exporter.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Release full name, at most 63 characters: fullnameOverride, or the release and the name. */}}
{{- define "net-exporter.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "net-exporter.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "net-exporter.selectorLabels" -}}
app.kubernetes.io/name: {{ include "net-exporter.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* The labels of every object and pod: Kubernetes' recommended ones and commonLabels. */}}
{{- define "net-exporter.labels" -}}
{{ include "net-exporter.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: {{ include "net-exporter.name" . }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "net-exporter.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "net-exporter.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The image: global.imageRegistry or image.registry, the repository, then the digest or tag. */}}
{{- define "net-exporter.image" -}}
{{- $registry := default .Values.image.registry ((.Values.global).imageRegistry) -}}
{{- $repository := .Values.image.repository -}}
{{- if $registry }}{{ $repository = printf "%s/%s" $registry $repository }}{{ end -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" $repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* True while the image is the placeholder no one publishes. */}}
{{- define "net-exporter.placeholderImage" -}}
{{- if hasPrefix "ghcr.io/net-exporter/net-exporter:" (include "net-exporter.image" .) -}}true{{- end -}}
{{- end -}}

{{/* The job label the monitors give the series (the jobLabel's value), or prometheusRule.job. */}}
{{- define "net-exporter.job" -}}
{{- if .Values.prometheusRule.job -}}
{{- .Values.prometheusRule.job -}}
{{- else -}}
{{- $jobLabel := ternary .Values.podMonitor.jobLabel .Values.serviceMonitor.jobLabel .Values.podMonitor.enabled -}}
{{- $labels := include "net-exporter.labels" . | fromYaml -}}
{{- if not (hasKey $labels $jobLabel) -}}
{{- fail (printf "the monitor's jobLabel %q is not a label the chart sets (%s): set prometheusRule.job to the job the rules should select" $jobLabel (keys $labels | sortAlpha | join ", ")) -}}
{{- end -}}
{{- index $labels $jobLabel -}}
{{- end -}}
{{- end -}}

{{/* The namespace of a monitoring object: its own value, or the release namespace. */}}
{{- define "net-exporter.monitorNamespace" -}}
{{- default .root.Release.Namespace .namespace -}}
{{- end -}}

{{/* The latency buckets in force: network.buckets, or the exporter's defaults (collectors/pacing.ts). */}}
{{- define "net-exporter.networkBuckets" -}}
{{- if .Values.network.buckets -}}
{{- toJson .Values.network.buckets -}}
{{- else -}}
[0.00004,0.000056,0.00008,0.0001,0.00014,0.0002,0.00028,0.0004,0.00056,0.0008,0.001,0.0014,0.002,0.0028,0.004,0.0056,0.008,0.01,0.014,0.02,0.028,0.04,0.056,0.08,0.1,0.14,0.2,0.28,0.4,0.56,0.8,1,1.4,2,2.8,4,5.6,8]
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
{{- range $collector := list "dns" "network" "ntp" "echo" -}}
{{- $values := index $.Values $collector -}}
{{- $timeout := include "net-exporter.durationMs" $values.timeout | float64 -}}
{{- $interval := include "net-exporter.durationMs" $values.interval | float64 -}}
{{- if ge $timeout $interval -}}
{{- fail (printf "%s.timeout=%s is not below %s.interval=%s: the exporter would refuse to start" $collector (toString $values.timeout) $collector (toString $values.interval)) -}}
{{- end -}}
{{- end -}}
{{- if and .Values.serviceMonitor.enabled .Values.podMonitor.enabled -}}
{{- fail "serviceMonitor.enabled and podMonitor.enabled are both true: Prometheus would scrape every pod twice; enable one" -}}
{{- end -}}
{{- if and .Values.serviceMonitor.enabled (not .Values.service.enabled) -}}
{{- fail "serviceMonitor.enabled needs service.enabled: a ServiceMonitor selects a Service (or use podMonitor.enabled)" -}}
{{- end -}}
{{- if le (float64 .Values.prometheusRule.clockSkewSeconds) 0.0 -}}
{{- fail (printf "prometheusRule.clockSkewSeconds=%v must be above 0" .Values.prometheusRule.clockSkewSeconds) -}}
{{- end -}}
{{- range $name := list "dnsErrorRatio" "quorum" "packetLossRatio" -}}
{{- $ratio := index $.Values.prometheusRule $name | float64 -}}
{{- if or (le $ratio 0.0) (gt $ratio 1.0) -}}
{{- fail (printf "prometheusRule.%s=%v must be above 0 and at most 1" $name (index $.Values.prometheusRule $name)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
