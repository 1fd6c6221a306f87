{{/*
What a ServiceMonitor's endpoint and a PodMonitor's podMetricsEndpoint share:
the path, interval, scheme, TLS and basic auth, the chart's relabeling of the
node name to "node", then the user's relabelings and metric relabelings.
Called with (dict "root" $ "monitor" .Values.serviceMonitor|podMonitor).
*/}}
{{- define "net-exporter.monitorEndpoint" -}}
path: /metrics
interval: {{ .monitor.interval }}
scrapeTimeout: {{ .monitor.scrapeTimeout }}
scheme: {{ .root.Values.webConfig.scheme }}
{{- with .root.Values.serviceMonitor.tlsConfig }}
tlsConfig:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .root.Values.serviceMonitor.basicAuth }}
basicAuth:
  {{- toYaml . | nindent 2 }}
{{- end }}
relabelings:
  # The observing node, so alerts and the dashboard can say "from node A to node B".
  - sourceLabels: [__meta_kubernetes_pod_node_name]
    targetLabel: node
  {{- with .monitor.relabelings }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- with .monitor.metricRelabelings }}
metricRelabelings:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* The Operator's histogram fields for serviceMonitor.histograms (both monitors take them). */}}
{{- define "net-exporter.monitorHistograms" -}}
{{- if ne .Values.serviceMonitor.histograms "classic" }}
# Native histograms travel only in the protobuf exposition: ask for it first.
scrapeProtocols: [PrometheusProto, OpenMetricsText1.0.0, OpenMetricsText0.0.1, PrometheusText0.0.4]
scrapeNativeHistograms: true
{{- end }}
{{- if eq .Values.serviceMonitor.histograms "both" }}
scrapeClassicHistograms: true
{{- end }}
{{- end -}}
