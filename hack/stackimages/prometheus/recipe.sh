# Prometheus server, built from the module go.mod pins (v0.316.0 is
# Prometheus 3.16.0) for the Prometheus the prometheus-operator recipe's chart
# declares. Only Kubernetes service discovery is compiled in (the operator
# generates nothing else), and the web UI is left out (the module ships no
# built assets; the HTTP API is all kaic uses).
v=$(modversion github.com/prometheus/prometheus)
pv=$(cat "$(moddir github.com/prometheus/prometheus)/VERSION")
image prometheus "kaic.local/prometheus:v$pv" \
	-go github.com/prometheus/prometheus/cmd/prometheus=/bin/prometheus \
	-tags "netgo remove_all_sd enable_kubernetes_sd" \
	-ldflags "-X github.com/prometheus/common/version.Version=$pv -X github.com/prometheus/common/version.Revision=$v" \
	-workdir /prometheus
