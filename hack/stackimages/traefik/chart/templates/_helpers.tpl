{{/* Labels every object of the release carries. */}}
{{- define "traefik.labels" -}}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{ include "traefik.selector" . }}
{{- end -}}

{{/* Labels of the pods, and the Deployment's and Service's selector. */}}
{{- define "traefik.selector" -}}
app.kubernetes.io/name: traefik
app.kubernetes.io/component: gateway
{{- end -}}

{{/* Cluster-scoped names carry the release namespace. */}}
{{- define "traefik.clusterName" -}}
traefik-{{ .Release.Namespace }}
{{- end -}}

{{/* The address Traefik writes into the Gateways' status. */}}
{{- define "traefik.statusHostname" -}}
{{- .Values.statusAddress.hostname | default (printf "traefik.%s.svc.%s" .Release.Namespace .Values.clusterDomain) -}}
{{- end -}}
