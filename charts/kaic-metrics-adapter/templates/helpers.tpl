{{- /* Named templates only: this file renders to nothing. (Not _helpers.tpl: go:embed leaves out files whose names start with an underscore.) */ -}}
{{- define "kaic-metrics-adapter.fullname" -}}
{{- default "kaic-metrics-adapter" .Values.fullnameOverride | trunc 52 | trimSuffix "-" -}}
{{- end -}}

{{- define "kaic-metrics-adapter.labels" -}}
app.kubernetes.io/name: kaic-metrics-adapter
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end -}}

{{- define "kaic-metrics-adapter.selectorLabels" -}}
app.kubernetes.io/name: kaic-metrics-adapter
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}
