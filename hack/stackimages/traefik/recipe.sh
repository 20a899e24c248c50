# Traefik, the Gateway API implementation of the offline stack: the traefik
# command built from the module go.mod pins (see there why v3.6), and kaic's
# chart (chart/): Traefik with only its Kubernetes Gateway provider, its
# GatewayClass and the Service in front of it. The Gateway API CRDs come from
# the gateway-api component. The chart's image defaults to the ref built here.
v=$(modversion github.com/traefik/traefik/v3)
image traefik "kaic.local/traefik:$v" \
	-go github.com/traefik/traefik/v3/cmd/traefik=/usr/local/bin/traefik \
	-ldflags "-X github.com/traefik/traefik/v3/pkg/version.Version=$v"
chart traefik chart -version "${v#v}" -app-version "$v"
