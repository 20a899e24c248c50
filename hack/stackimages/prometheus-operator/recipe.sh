# Prometheus operator: the operator and the configuration reloader it adds to
# every Prometheus pod, built from the module go.mod pins, and kaic's chart
# (chart/): the operator with its RBAC and one Prometheus that selects the
# ServiceMonitors and PodMonitors of every namespace. The chart carries no
# CRDs: the overlay applies them from the module's
# example/prometheus-operator-crd as a manifests component (4 MiB of CRDs
# would push the Helm release Secret over its 1 MiB limit). The chart's
# images default to the refs built here and by the prometheus recipe.
v=$(modversion github.com/prometheus-operator/prometheus-operator)
ld="-X github.com/prometheus/common/version.Version=${v#v}"
image prometheus-operator "kaic.local/prometheus-operator:$v" \
	-go github.com/prometheus-operator/prometheus-operator/cmd/operator=/bin/operator \
	-ldflags "$ld"
image prometheus-operator-config-reloader "kaic.local/prometheus-config-reloader:$v" \
	-go github.com/prometheus-operator/prometheus-operator/cmd/prometheus-config-reloader=/bin/prometheus-config-reloader \
	-ldflags "$ld"
chart prometheus-operator chart -version "${v#v}" -app-version "$v"
