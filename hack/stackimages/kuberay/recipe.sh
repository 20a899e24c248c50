# KubeRay operator: the manager built from the module hack/testbin/kuberay
# pins, and kaic's chart (chart/) completed with the module's CRDs
# (config/crd/bases) and RBAC rules (config/rbac). The chart's image
# defaults to kaic.local/kuberay-operator:<appVersion>.
gomodule ../../testbin/kuberay
v=$(modversion github.com/ray-project/kuberay/ray-operator)
m=$(moddir github.com/ray-project/kuberay/ray-operator)
image kuberay-operator "kaic.local/kuberay-operator:$v" \
	-go github.com/ray-project/kuberay/ray-operator=/manager
chart kuberay-operator chart -version "${v#v}" -app-version "$v" \
	-add "$m/config/crd/bases=crds" \
	-add "$m/config/rbac/role.yaml=files" \
	-add "$m/config/rbac/leader_election_role.yaml=files"
