{{- /* Named templates only: this file renders to nothing. (Not _helpers.tpl: go:embed leaves out files whose names start with an underscore.) */ -}}
{{- define "kuberay-webhook.fullname" -}}
{{- default "kuberay-webhook" .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{- define "kuberay-webhook.labels" -}}
app.kubernetes.io/part-of: kuberay-operator
app.kubernetes.io/component: webhook
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end -}}

{{- /*
The webhook replica's pods are KubeRay operator pods (name
kuberay-operator, as the operator chart's are) of this release; the
instance label keeps them out of the operator chart's selectors.
*/ -}}
{{- define "kuberay-webhook.selectorLabels" -}}
app.kubernetes.io/name: kuberay-operator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: webhook
{{- end -}}

{{- define "kuberay-webhook.serviceName" -}}{{ include "kuberay-webhook.fullname" . }}-service{{- end -}}
{{- define "kuberay-webhook.secretName" -}}{{ include "kuberay-webhook.fullname" . }}-server-cert{{- end -}}
{{- define "kuberay-webhook.certificateName" -}}{{ include "kuberay-webhook.fullname" . }}-serving-cert{{- end -}}
{{- define "kuberay-webhook.issuerName" -}}{{ include "kuberay-webhook.fullname" . }}-selfsigned{{- end -}}

{{- /* The configuration is cluster-scoped: one per cluster, named as KubeRay's own manifests name it once installed. */ -}}
{{- define "kuberay-webhook.configurationName" -}}kuberay-validating-webhook-configuration{{- end -}}

{{- /* Where controller-runtime's webhook server reads tls.crt and tls.key when the operator sets no directory: $TMPDIR/k8s-webhook-server/serving-certs. */ -}}
{{- define "kuberay-webhook.certDir" -}}/tmp/k8s-webhook-server/serving-certs{{- end -}}

{{- /* controller-runtime's default webhook port, which the operator does not change. */ -}}
{{- define "kuberay-webhook.port" -}}9443{{- end -}}
