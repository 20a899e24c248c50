# cert-manager: controller, webhook and cainjector built from this folder's
# commands over the root module (the proxy does not serve upstream's command
# modules), and the chart the module zip carries (deploy/charts/cert-manager,
# whose placeholder version is set to the module's). With the values
# imageRegistry=kaic.local and imageNamespace="" the chart names exactly
# these images; the overlay also sets startupapicheck.enabled=false (no
# startupapicheck image is built).
v=$(modversion github.com/cert-manager/cert-manager)
for c in controller webhook cainjector; do
	image "cert-manager-$c" "kaic.local/cert-manager-$c:$v" \
		-go "./$c=/usr/local/bin/cert-manager-$c" \
		-ldflags "-X github.com/cert-manager/cert-manager/pkg/util.AppVersion=$v"
done
chart cert-manager "$(moddir github.com/cert-manager/cert-manager)/deploy/charts/cert-manager" \
	-version "$v" -app-version "$v"
