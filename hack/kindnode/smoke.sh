#!/usr/bin/env bash
# Creates a one-node kind cluster from the image hack/kindnode/build.sh made,
# through the kind Go library, and checks it: node Ready, a pod from a locally
# built image runs, `kubectl logs` works, cluster DNS resolves, and a pod with
# RuntimeClass gvisor (handler runsc) runs in gVisor: it sees another kernel
# than the node's. Deletes the cluster afterwards (KEEP=1 keeps it).
#
#   hack/kindnode/smoke.sh [node-image]
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${KAIC_KINDNODE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kaic/kindnode}
name=${KAIC_SMOKE_CLUSTER:-kaic-kindnode-smoke}

image=${1:-$("$here/build.sh")}
testbin=$(KAIC_TESTBIN_QUIET=1 "$repo/hack/testbin/build.sh" kubectl)
k8s_version=${image##*:}
kubeconfig=$(mktemp)
kubectl() { "$testbin/kubectl" --kubeconfig "$kubeconfig" "$@"; }
say() { echo "smoke: $*" >&2; }

cleanup() {
	if [[ ${KEEP:-} == 1 ]]; then
		say "kept cluster $name (kubeconfig $kubeconfig)"
	else
		"$cache/bin/kindcluster" -name "$name" -delete >/dev/null 2>&1 || true
		rm -f "$kubeconfig"
	fi
}
trap cleanup EXIT

t0=$(date +%s)
"$cache/bin/kindcluster" -name "$name" -image "$image" -kubeconfig "$kubeconfig"
t1=$(date +%s)
kubectl wait --for=condition=Ready node --all --timeout=120s

# A locally built image, side-loaded the way `kind load image-archive` does.
docker exec -i "$name-control-plane" ctr -n k8s.io images import --all-platforms --digests --snapshotter=overlayfs - \
	<"$cache/$k8s_version/debian.tar" >/dev/null
kubectl apply -f - <<'EOF'
apiVersion: v1
kind: Pod
metadata:
  name: smoke
spec:
  containers:
  - name: smoke
    image: kaic.local/debian:bookworm
    imagePullPolicy: Never
    command: ["bash", "-c", "echo smoke-ok; getent hosts kubernetes.default.svc.cluster.local; exec sleep 600"]
EOF
kubectl -n kube-system rollout status deployment/coredns --timeout=180s
kubectl wait --for=condition=Ready pod/smoke --timeout=120s
for _ in $(seq 30); do
	logs=$(kubectl logs smoke)
	grep -q 'kubernetes.default.svc.cluster.local' <<<"$logs" && break
	# DNS may not have been ready when the pod started; ask again.
	logs+=$'\n'$(kubectl exec smoke -- getent hosts kubernetes.default.svc.cluster.local || true)
	grep -q 'kubernetes.default.svc.cluster.local' <<<"$logs" && break
	sleep 2
done
echo "$logs"
grep -q smoke-ok <<<"$logs" || { say "FAIL: no pod output"; exit 1; }
grep -q 'kubernetes.default.svc.cluster.local' <<<"$logs" || { say "FAIL: cluster DNS did not resolve"; exit 1; }

# gVisor: the node's containerd has the runtime handler runsc.
kubectl apply -f - <<'EOF'
apiVersion: node.k8s.io/v1
kind: RuntimeClass
metadata:
  name: gvisor
handler: runsc
---
apiVersion: v1
kind: Pod
metadata:
  name: smoke-gvisor
spec:
  runtimeClassName: gvisor
  containers:
  - name: smoke
    image: kaic.local/debian:bookworm
    imagePullPolicy: Never
    command: ["bash", "-c", "echo kernel: $(cat /proc/version); exec sleep 600"]
EOF
# CAP_SYS_RESOURCE (bit 24) missing from this host's bounding set keeps
# gVisor's shim from starting (README, host finding 6).
cap_sys_resource=$(( (16#$(awk '/^CapBnd/ {print $2}' /proc/self/status) >> 24) & 1 ))
if ! kubectl wait --for=condition=Ready pod/smoke-gvisor --timeout=120s; then
	events=$(kubectl describe pod smoke-gvisor | tail -20)
	echo "$events"
	if ((cap_sys_resource == 0)) && grep -q 'failed to set OOM Score on shim' <<<"$events"; then
		say "gVisor: not proven on this host: its bounding set lacks CAP_SYS_RESOURCE, which gVisor's shim needs"
	else
		docker exec "$name-control-plane" sh -c 'tail -n 30 /var/log/runsc/*/*.log 2>/dev/null; journalctl -u containerd --no-pager | grep -i runsc | tail -20'
		say "FAIL: the gVisor pod did not run"
		exit 1
	fi
else
	sandboxed=$(kubectl logs smoke-gvisor | sed -n 's/^kernel: //p')
	node_kernel=$(docker exec "$name-control-plane" cat /proc/version)
	echo "gVisor pod: $sandboxed"
	echo "node:       $node_kernel"
	[[ -n $sandboxed && $sandboxed != "$node_kernel" ]] || { say "FAIL: the gVisor pod sees the node's kernel"; exit 1; }
fi

kubectl get nodes -o wide
kubectl get pods -A -o wide
say "PASS: cluster created in $((t1 - t0))s, all checks in $(($(date +%s) - t0))s"
