# Kueue: the manager built from the module hack/testbin/kueue pins, and the
# chart the module zip carries (charts/kueue). The overlay sets
# controllerManager.manager.image.repository=kaic.local/kueue and
# controllerManager.manager.image.tag=<version>.
gomodule ../../testbin/kueue
v=$(modversion sigs.k8s.io/kueue)
image kueue "kaic.local/kueue:$v" \
	-go sigs.k8s.io/kueue/cmd/kueue=/manager \
	-ldflags "-X sigs.k8s.io/kueue/pkg/version.GitVersion=$v"
chart kueue "$(moddir sigs.k8s.io/kueue)/charts/kueue"
