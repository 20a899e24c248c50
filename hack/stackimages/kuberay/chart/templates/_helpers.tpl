{{- define "kuberay-operator.labels" -}}
app.kubernetes.io/name: kuberay-operator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: kuberay-operator
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "kuberay-operator.selector" -}}
app.kubernetes.io/name: kuberay-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* rules of an RBAC object shipped in files/ (copied from the module's config/rbac) */}}
{{- define "kuberay-operator.rules" -}}
{{- $obj := .Files.Get .file | fromYaml -}}
{{- required (printf "%s has no rules: assemble the chart with hack/stackimages/build.sh" .file) $obj.rules | toYaml -}}
{{- end }}
