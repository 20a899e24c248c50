{{/* Labels every object of the release carries. */}}
{{- define "po.labels" -}}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/part-of: kaic-monitoring
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end -}}

{{/* Labels of the operator's pods, and its Deployment's selector. */}}
{{- define "po.operatorSelector" -}}
app.kubernetes.io/name: prometheus-operator
app.kubernetes.io/component: controller
{{- end -}}

{{/* Cluster-scoped names carry the release namespace, so two releases in
different namespaces do not collide. */}}
{{- define "po.clusterName" -}}
{{ .name }}-{{ .ctx.Release.Namespace }}
{{- end -}}
