{{- /* Named templates only: this file renders to nothing. (Not _helpers.tpl: go:embed leaves out files whose names start with an underscore.) */ -}}
{{- define "kaic-fake-gpu.fullname" -}}
{{- default "kaic-fake-gpu" .Values.fullnameOverride | trunc 52 | trimSuffix "-" -}}
{{- end -}}

{{- define "kaic-fake-gpu.labels" -}}
app.kubernetes.io/name: kaic-fake-gpu
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end -}}

{{- define "kaic-fake-gpu.selectorLabels" -}}
app.kubernetes.io/name: kaic-fake-gpu
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* The driver name is fixed: it is that of the `example` accelerator model. */}}
{{- define "kaic-fake-gpu.driverName" -}}gpu.example.com{{- end -}}

{{- define "kaic-fake-gpu.serviceMonitor" -}}
{{- $mode := toString .Values.metrics.serviceMonitor -}}
{{- $served := .Capabilities.APIVersions.Has "monitoring.coreos.com/v1/ServiceMonitor" -}}
{{- if and .Values.metrics.enabled (eq $mode "true") (not $served) -}}
{{- fail "metrics.serviceMonitor is true but the cluster serves no monitoring.coreos.com/v1 ServiceMonitor: install the Prometheus operator first, or set it to auto or false" -}}
{{- end -}}
{{- if and .Values.metrics.enabled (or (eq $mode "true") (and (eq $mode "auto") $served)) -}}true{{- end -}}
{{- end -}}

{{/* devicePlugin is "true" in device-plugin mode; an unknown mode fails the render. */}}
{{- define "kaic-fake-gpu.devicePlugin" -}}
{{- if not (has .Values.mode (list "dra" "device-plugin")) -}}
{{- fail (printf "mode must be dra or device-plugin, got %q" (toString .Values.mode)) -}}
{{- end -}}
{{- if eq .Values.mode "device-plugin" -}}true{{- end -}}
{{- end -}}

{{/* sharing is "true" when devices are shared; invalid sharing values fail the render. */}}
{{- define "kaic-fake-gpu.sharing" -}}
{{- $s := .Values.sharing | default dict -}}
{{- $strategy := toString ($s.strategy | default "none") -}}
{{- if not (has $strategy (list "none" "time-slicing")) -}}
{{- fail (printf "sharing.strategy must be none or time-slicing, got %q" $strategy) -}}
{{- end -}}
{{- if ne $strategy "none" -}}
{{- if lt (int $s.replicas) 2 -}}
{{- fail (printf "sharing.replicas must be at least 2 (holders of one shared device), got %v" $s.replicas) -}}
{{- end -}}
{{- if or (lt (int $s.devices) 1) (gt (int $s.devices) (int .Values.devicesPerNode)) -}}
{{- fail (printf "sharing.devices must be between 1 and devicesPerNode (%d), got %v" (int .Values.devicesPerNode) $s.devices) -}}
{{- end -}}
true
{{- end -}}
{{- end -}}
