#!/usr/bin/env bash
# Builds the control-plane binaries kaic's integration tests run against
# (kube-apiserver, kube-controller-manager, kube-scheduler, etcd, kwok) from
# the Go module proxy, into a cache directory outside the repository, and
# prints that directory on stdout. On request it also builds the Kueue
# manager the gang-scheduling check's tests run (component kueue) and the
# KubeRay operator the robust-controller check's tests run (component kuberay).
#
#   hack/testbin/build.sh                 # the default set
#   hack/testbin/build.sh kubelet kubeadm # any of: see COMPONENTS below
#   hack/testbin/build.sh kueue           # the Kueue manager
#   hack/testbin/build.sh kuberay         # the KubeRay operator
#   hack/testbin/build.sh --check         # exit 1 if a binary is missing or stale; build nothing
#
# The Kubernetes, etcd, kwok, Kueue and KubeRay versions are pinned by the wrapper modules
# next to this script (their go.mod and go.sum). Each binary is stamped with
# a hash of its wrapper module and build flags and is rebuilt only when that
# changes, so a second run with everything present returns at once.
#
# Environment:
#   KAIC_TESTBIN_DIR   output directory (default: $XDG_CACHE_HOME/kaic/testbin/<k8s version>)
#   KAIC_TESTBIN_QUIET set to 1 to print only the directory
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
k8s_version=$(awk '$1=="require" && $2=="k8s.io/kubernetes" {print $3}' "$here/kubernetes/go.mod")
[[ -n $k8s_version ]] || { echo "testbin: cannot read the k8s.io/kubernetes version from $here/kubernetes/go.mod" >&2; exit 1; }
kwok_version=$(awk '$1=="require" && $2=="sigs.k8s.io/kwok" {print $3}' "$here/kwok/go.mod")
kueue_version=$(awk '$1=="require" && $2=="sigs.k8s.io/kueue" {print $3}' "$here/kueue/go.mod")

out=${KAIC_TESTBIN_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/kaic/testbin/$k8s_version}
mkdir -p "$out"

DEFAULT=(etcd kube-apiserver kube-scheduler kube-controller-manager kwok)
COMPONENTS=(etcd kube-apiserver kube-scheduler kube-controller-manager kwok kubelet kubeadm kube-proxy kubectl kueue kuberay)
check_only=false
if [[ ${1:-} == --check ]]; then
	check_only=true
	shift
fi
want=("$@")
[[ ${#want[@]} -gt 0 ]] || want=("${DEFAULT[@]}")
for c in "${want[@]}"; do
	[[ " ${COMPONENTS[*]} " == *" $c "* ]] || { echo "testbin: unknown component $c (known: ${COMPONENTS[*]})" >&2; exit 2; }
done

say() { [[ ${KAIC_TESTBIN_QUIET:-} == 1 ]] || echo "testbin: $*" >&2; }

# One build at a time per output directory: parallel test packages or CI
# steps that all call this script wait for the first one.
exec 9>"$out/.lock"
flock 9

minor=${k8s_version#v1.}
minor=${minor%%.*}
k8s_ldflags="-s -w \
 -X k8s.io/component-base/version.gitVersion=$k8s_version \
 -X k8s.io/component-base/version.gitMajor=1 \
 -X k8s.io/component-base/version.gitMinor=$minor \
 -X k8s.io/component-base/version.gitTreeState=clean \
 -X k8s.io/component-base/version.buildDate=1970-01-01T00:00:00Z"

module_of() {
	case $1 in
	etcd) echo etcd ;;
	kwok) echo kwok ;;
	kueue) echo kueue ;;
	kuberay) echo kuberay ;;
	*) echo kubernetes ;;
	esac
}

package_of() {
	case $1 in
	etcd) echo . ;;
	kwok) echo sigs.k8s.io/kwok/cmd/kwok ;;
	kueue) echo sigs.k8s.io/kueue/cmd/kueue ;;
	kuberay) echo github.com/ray-project/kuberay/ray-operator ;;
	*) echo "k8s.io/kubernetes/cmd/$1" ;;
	esac
}

ldflags_of() {
	case $1 in
	etcd | kwok | kuberay) echo "-s -w" ;;
	kueue) echo "-s -w -X sigs.k8s.io/kueue/pkg/version.GitVersion=$kueue_version" ;;
	*) echo "$k8s_ldflags" ;;
	esac
}

stamp_of() {
	local mod=$1 c=$2
	{
		go version
		cat "$here/$mod/go.mod" "$here/$mod/go.sum"
		[[ -f $here/$mod/main.go ]] && cat "$here/$mod/main.go"
		package_of "$c"
		ldflags_of "$c"
	} | sha256sum | cut -d' ' -f1
}

build() {
	local c=$1 mod pkg stamp start
	mod=$(module_of "$c")
	pkg=$(package_of "$c")
	stamp=$(stamp_of "$mod" "$c")
	if [[ -x $out/$c && -f $out/.$c.stamp && $(cat "$out/.$c.stamp") == "$stamp" ]]; then
		return 0
	fi
	if $check_only; then
		echo "testbin: $c is missing or stale in $out" >&2
		exit 1
	fi
	say "building $c ($pkg) into $out ..."
	start=$(date +%s)
	(cd "$here/$mod" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags "$(ldflags_of "$c")" -o "$out/.$c.tmp" "$pkg")
	mv -f "$out/.$c.tmp" "$out/$c"
	echo "$stamp" >"$out/.$c.stamp"
	say "built $c in $(($(date +%s) - start))s"
}

# kwok refuses to start without stage definitions; the module ships the
# ones that make nodes Ready and pods Running at once.
kwok_stages() {
	local dir target=$out/kwok-stages.yaml
	[[ -s $target && -f $out/.kwok-stages.stamp && $(cat "$out/.kwok-stages.stamp") == "$kwok_version" ]] && return 0
	dir=$(cd "$here/kwok" && go mod download -json "sigs.k8s.io/kwok@$kwok_version" | awk -F'"' '$2=="Dir" {print $4}')
	[[ -d $dir ]] || { echo "testbin: kwok module directory not found" >&2; exit 1; }
	{
		for f in node/fast/node-initialize.yaml node/heartbeat/node-heartbeat.yaml \
			pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
			echo "---"
			cat "$dir/kustomize/stage/$f"
		done
	} >"$target.tmp"
	mv -f "$target.tmp" "$target"
	echo "$kwok_version" >"$out/.kwok-stages.stamp"
}

for c in "${want[@]}"; do
	build "$c"
	[[ $c != kwok ]] || kwok_stages
done
echo "$out"
