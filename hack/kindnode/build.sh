#!/usr/bin/env bash
# Builds a kind node image from local ingredients only: a Debian rootfs made
# with debootstrap, binaries built from the Go module proxy, and the
# control-plane images kubeadm expects, assembled from those binaries and
# preloaded into the node's containerd. Nothing is pulled from an image
# registry. The image is loaded into the Docker engine that `docker` talks to
# (DOCKER_HOST) and its reference is printed on stdout.
#
#   hack/kindnode/build.sh            # build what is missing, print the image
#   hack/kindnode/build.sh --check    # exit 1 naming what is missing or stale; build nothing
#
# Must run as root (debootstrap, chroot, a short-lived containerd for the
# preload). Needs docker, debootstrap, gcc (static glibc), jq, tar, go.
#
# Every step is cached under $KAIC_KINDNODE_CACHE (default
# $XDG_CACHE_HOME/kaic/kindnode): Go binaries carry a stamp of their package,
# version and flags; image archives a hash of their inputs; the node image a
# label with the hash of everything that went into it, so a run with nothing
# changed only hashes files and returns.
#
# Environment:
#   KAIC_KINDNODE_CACHE   cache directory
#   KAIC_DEBIAN_MIRROR    Debian mirror for debootstrap (default http://deb.debian.org/debian)
#   KAIC_KINDNODE_IMAGE   image repository (default kaic.local/kind-node)
#
# --check looks at the cache only (binaries and their stamps, the Debian
# rootfs, the image archives and the node image archive); it needs neither
# root nor a Docker engine. It says nothing about whether the engine holds
# the image: a build with everything cached loads it in under a minute.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${KAIC_KINDNODE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kaic/kindnode}
mirror=${KAIC_DEBIAN_MIRROR:-http://deb.debian.org/debian}
image_repo=${KAIC_KINDNODE_IMAGE:-kaic.local/kind-node}

suite=bookworm
CONTAINERD_VERSION=v2.3.4
CRICTL_VERSION=v1.37.0
CNI_PLUGINS_VERSION=v1.9.1
# gVisor (runsc and its containerd shim): the Go module proxy serves the
# module's "go" branch as pseudo-versions only.
GVISOR_VERSION=v0.0.0-20260905035102-160fafc42237
# Packages of the node rootfs (kind's base image list without the storage
# extras nfs-common and open-iscsi), plus runc and dbus.
PACKAGES=systemd,systemd-sysv,dbus,conntrack,iptables,nftables,iproute2,ethtool,util-linux,mount,kmod,libseccomp2,pigz,fuse-overlayfs,e2fsprogs,bash,ca-certificates,curl,jq,procps,runc

say() { echo "kindnode: $*" >&2; }
die() { say "$*"; exit 1; }
sha() { sha256sum "$@" | cut -d' ' -f1; }
strsha() { sha256sum | cut -d' ' -f1; }
# tar with fixed ownership, order and times, so equal trees give equal layers
dtar() { tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner "$@"; }

check_only=false
[[ ${1:-} != --check ]] || check_only=true
missing=()
# stale NAME WHY records, in --check mode, what a build would have to make.
stale() { missing+=("$1 ($2)"); }

if ! $check_only; then
	[[ $(id -u) == 0 ]] || die "must run as root"
	# Debian packages of the tools the build runs, installed when missing
	# (the build runs as root anyway).
	declare -A pkg_of=([docker]=docker.io [debootstrap]=debootstrap [gcc]=gcc [jq]=jq [tar]=tar [chroot]=coreutils)
	want=()
	for t in "${!pkg_of[@]}"; do command -v "$t" >/dev/null || want+=("${pkg_of[$t]}"); done
	if ((${#want[@]})); then
		command -v apt-get >/dev/null || die "missing: ${want[*]} (install these packages; no apt-get here)"
		echo "kindnode: installing ${want[*]} with apt-get" >&2
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${want[@]}" >/dev/null ||
			die "apt-get install ${want[*]} failed"
	fi
	command -v go >/dev/null || die "go not found (Go 1.26 builds kaic and the node's binaries)"
	docker info >/dev/null 2>&1 || die "docker engine not reachable (DOCKER_HOST=${DOCKER_HOST:-unset})"
fi

mkdir -p "$cache/bin"
exec 9>"$cache/.lock"
flock 9
t0=$(date +%s)

# 1. Kubernetes binaries, pinned by hack/testbin.
k8s_bins=(kubelet kubeadm kubectl kube-proxy kube-apiserver kube-controller-manager kube-scheduler etcd)
if $check_only; then
	testbin=$(KAIC_TESTBIN_QUIET=1 "$repo/hack/testbin/build.sh" --check "${k8s_bins[@]}" 2>/dev/null) || {
		say "missing: Kubernetes binaries (hack/testbin/build.sh ${k8s_bins[*]})"
		exit 1
	}
else
	testbin=$(KAIC_TESTBIN_QUIET=1 "$repo/hack/testbin/build.sh" "${k8s_bins[@]}")
fi
k8s_version=$("$testbin/kubeadm" version -o short)
out=$cache/$k8s_version
mkdir -p "$out/images"

# Image references kubeadm of this version expects.
mapfile -t kubeadm_images < <("$testbin/kubeadm" config images list --kubernetes-version "$k8s_version")
ref_of() { printf '%s\n' "${kubeadm_images[@]}" | grep -E "/$1:" || die "kubeadm lists no $1 image"; }
coredns_ref=$(ref_of coredns)
coredns_version=${coredns_ref##*:}

# kind's base-image files come from the kind module pinned in kaic's go.mod.
kind_version=$(awk '$1=="sigs.k8s.io/kind" {print $2}' "$repo/go.mod")
[[ -n $kind_version ]] || die "no sigs.k8s.io/kind in $repo/go.mod"
moddir() { (cd "$here/tools" && go mod download -json "$1" | jq -r .Dir); }
kind_dir=$(moddir "sigs.k8s.io/kind@$kind_version")
kind_files=$kind_dir/images/base/files
[[ -d $kind_files ]] || die "kind base files not found in $kind_dir"

# 2. Go-built ingredients.
goinstall() { # name pkg@version ldflags [tags]
	local name=$1 pkg=$2 ldflags=$3 tags=${4:-} stamp s built
	stamp=$(printf '%s\n' "$(go version)" "$pkg" "$ldflags" "$tags" | strsha)
	[[ -x $cache/bin/$name && $(cat "$cache/bin/.$name.stamp" 2>/dev/null) == "$stamp" ]] && return 0
	if $check_only; then stale "$name" "binary missing or stale"; return 0; fi
	say "building $name ($pkg) ..."
	s=$(date +%s)
	GOBIN=$cache/bin CGO_ENABLED=0 go install -trimpath -ldflags "$ldflags" ${tags:+-tags "$tags"} "$pkg"
	# go install names the binary after the package's last element
	built=${pkg%@*}
	built=${built##*/}
	[[ $built == "$name" ]] || mv "$cache/bin/$built" "$cache/bin/$name"
	echo "$stamp" >"$cache/bin/.$name.stamp"
	say "built $name in $(($(date +%s) - s))s"
}
cd "$cache"
ctrd=github.com/containerd/containerd/v2
ctrd_ld="-s -w -X $ctrd/version.Version=$CONTAINERD_VERSION"
ctrd_tags="no_aufs no_zfs no_btrfs no_devmapper"
goinstall containerd "$ctrd/cmd/containerd@$CONTAINERD_VERSION" "$ctrd_ld" "$ctrd_tags"
goinstall containerd-shim-runc-v2 "$ctrd/cmd/containerd-shim-runc-v2@$CONTAINERD_VERSION" "$ctrd_ld" "$ctrd_tags"
goinstall ctr "$ctrd/cmd/ctr@$CONTAINERD_VERSION" "$ctrd_ld" "$ctrd_tags"
goinstall crictl "sigs.k8s.io/cri-tools/cmd/crictl@$CRICTL_VERSION" "-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=$CRICTL_VERSION"
for p in ipam/host-local main/loopback main/ptp meta/portmap; do
	goinstall "${p#*/}" "github.com/containernetworking/plugins/plugins/$p@$CNI_PLUGINS_VERSION" "-s -w"
done
goinstall coredns "github.com/coredns/coredns@$coredns_version" "-s -w"
# gVisor: the sandbox runtime behind RuntimeClass gvisor (handler runsc).
gvisor_ld="-s -w -X gvisor.dev/gvisor/runsc/version.version=$GVISOR_VERSION"
goinstall runsc "gvisor.dev/gvisor/runsc@$GVISOR_VERSION" "$gvisor_ld"
goinstall containerd-shim-runsc-v1 "gvisor.dev/gvisor/shim@$GVISOR_VERSION" "$gvisor_ld"

# Small tools of this folder (image assembly, cluster creation).
tools_stamp=$( (go version; cat "$here/tools/go.mod" "$here/tools/go.sum" "$here"/tools/*/*.go) | strsha)
if [[ ! -x $cache/bin/mkimage || ! -x $cache/bin/kindcluster || $(cat "$cache/bin/.tools.stamp" 2>/dev/null) != "$tools_stamp" ]]; then
	$check_only && stale "mkimage, kindcluster" "missing or stale"
fi
if ! $check_only && [[ ! -x $cache/bin/mkimage || ! -x $cache/bin/kindcluster || $(cat "$cache/bin/.tools.stamp" 2>/dev/null) != "$tools_stamp" ]]; then
	say "building mkimage, kindcluster ..."
	(cd "$here/tools" && CGO_ENABLED=0 go build -trimpath -o "$cache/bin/" ./mkimage ./kindcluster)
	echo "$tools_stamp" >"$cache/bin/.tools.stamp"
fi

# pause, from the C source in the k8s.io/kubernetes module.
pause_src=$(moddir "k8s.io/kubernetes@$k8s_version")/build/pause/linux/pause.c
pause_stamp=$( (gcc --version | head -1; sha "$pause_src") | strsha)
if [[ ! -x $cache/bin/pause || $(cat "$cache/bin/.pause.stamp" 2>/dev/null) != "$pause_stamp" ]]; then
	$check_only && stale pause "missing or stale"
fi
if ! $check_only && [[ ! -x $cache/bin/pause || $(cat "$cache/bin/.pause.stamp" 2>/dev/null) != "$pause_stamp" ]]; then
	say "building pause ..."
	gcc -Os -Wall -Werror -static -DVERSION="$k8s_version" -o "$cache/bin/pause" "$pause_src"
	strip "$cache/bin/pause"
	echo "$pause_stamp" >"$cache/bin/.pause.stamp"
fi

# 3. Debian rootfs (debootstrap), cached as a tarball.
deb_key=$(printf '%s\n' "$suite" "$PACKAGES" | strsha | cut -c1-16)
debian_tar=$cache/debian-$suite-$deb_key.tar
if $check_only; then
	[[ -s $debian_tar ]] || stale "Debian $suite rootfs" "$debian_tar missing"
	for i in kube-apiserver kube-controller-manager kube-scheduler kube-proxy etcd coredns pause; do
		[[ -s $out/images/$i.tar && -s $out/images/$i.tar.key ]] || stale "$i image" "$out/images/$i.tar missing"
	done
	[[ -s $out/node-image.tar && -s $out/node-image.tar.key ]] || stale "node image" "$out/node-image.tar missing"
	if ((${#missing[@]} > 0)); then
		say "missing from $cache: ${missing[*]}"
		exit 1
	fi
	say "cached inputs present in $cache"
	exit 0
fi
if [[ ! -s $debian_tar ]]; then
	say "debootstrap $suite from $mirror ..."
	s=$(date +%s)
	d=$(mktemp -d "$cache/debootstrap.XXXXXX")
	debootstrap --variant=minbase --include="$PACKAGES" "$suite" "$d" "$mirror" >"$cache/debootstrap.log" 2>&1 ||
		die "debootstrap failed, see $cache/debootstrap.log"
	rm -rf "$d"/var/cache/apt/archives/*.deb "$d"/var/lib/apt/lists/* "$d/etc/resolv.conf"
	: >"$d/etc/machine-id"
	dtar -C "$d" -cf "$debian_tar.tmp" .
	mv "$debian_tar.tmp" "$debian_tar"
	rm -rf "$d"
	say "debootstrap done in $(($(date +%s) - s))s"
fi
debian_sha=$(sha "$debian_tar")

# 4. Component images, as archives that ctr and docker load.
mkimage=$cache/bin/mkimage
mkimage_sha=$(sha "$mkimage")
PATH_ENV=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
work=$(mktemp -d "$cache/work.XXXXXX")
ctrd_pid=
cleanup() {
	[[ -z $ctrd_pid ]] || kill "$ctrd_pid" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

# Minimal base layer: /tmp, users, CA bundle.
base_layer=$work/base.tar
mkdir -p "$work/base"/{tmp,etc/ssl/certs,root,home/nonroot}
chmod 1777 "$work/base/tmp"
printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$work/base/etc/passwd"
printf 'root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n' >"$work/base/etc/group"
echo 'hosts: files dns' >"$work/base/etc/nsswitch.conf"
tar -xOf "$debian_tar" ./etc/ssl/certs/ca-certificates.crt >"$work/base/etc/ssl/certs/ca-certificates.crt"
dtar -C "$work/base" -cf "$base_layer" .

# component NAME "MKIMAGE-ARGS" SRC:DEST... writes $out/images/NAME.tar with
# one layer holding the SRC files at DEST, on top of the layers named in the
# args; it is rebuilt when the files, the base layer, the args or mkimage change.
component() {
	local name=$1 args=$2 archive=$out/images/$1.tar key f src dst
	shift 2
	# the work directory's name changes every run: keep it out of the key
	key=$( (echo "${args//$work/}" "$mkimage_sha" "$(sha "$base_layer")"; for f in "$@"; do echo "$f" "$(sha "${f%%:*}")"; done) | strsha)
	[[ -s $archive && $(cat "$archive.key" 2>/dev/null) == "$key" ]] && return 0
	say "image $name ..."
	rm -rf "${work:?}/${name:?}"
	mkdir -p "$work/$name"
	for f in "$@"; do
		src=${f%%:*} dst=${f#*:}
		install -D -m0755 "$src" "$work/$name$dst"
	done
	dtar -C "$work/$name" -cf "$work/$name.tar" .
	eval "set -- $args"
	"$mkimage" -out "$archive" "$@" -layer "$work/$name.tar"
	echo "$key" >"$archive.key"
}
for c in kube-apiserver kube-controller-manager kube-scheduler; do
	component "$c" "-layer $base_layer -tag $(ref_of "$c") -env $PATH_ENV -entrypoint '[\"/usr/local/bin/$c\"]'" \
		"$testbin/$c:/usr/local/bin/$c"
done
component etcd "-layer $base_layer -tag $(ref_of etcd) -env $PATH_ENV -entrypoint '[\"/usr/local/bin/etcd\"]'" \
	"$testbin/etcd:/usr/local/bin/etcd"
component coredns "-layer $base_layer -tag $coredns_ref -entrypoint '[\"/coredns\"]'" \
	"$cache/bin/coredns:/coredns"
# kind's containerd config names its own sandbox image; tag pause as both.
sandbox_ref=$(sed -n 's/^ *sandbox_image *= *"\(.*\)"/\1/p' "$kind_files/etc/containerd/config.toml")
component pause "-tag $(ref_of pause) ${sandbox_ref:+-tag $sandbox_ref} -user 65535:65535 -entrypoint '[\"/pause\"]'" \
	"$cache/bin/pause:/pause"
# kube-proxy needs iptables, nft and conntrack: Debian rootfs underneath.
component kube-proxy "-layer $debian_tar -tag $(ref_of kube-proxy) -env $PATH_ENV -entrypoint '[\"/usr/local/bin/kube-proxy\"]'" \
	"$testbin/kube-proxy:/usr/local/bin/kube-proxy.bin" "$here/files/kube-proxy-wrapper.sh:/usr/local/bin/kube-proxy"
# A plain Debian image for smoke tests; not preloaded into the node.
debian_img=$out/debian.tar
if [[ ! -s $debian_img || $(cat "$debian_img.key" 2>/dev/null) != "$debian_sha$mkimage_sha" ]]; then
	"$mkimage" -out "$debian_img" -layer "$debian_tar" -tag "kaic.local/debian:$suite" -env "$PATH_ENV" -cmd '["/bin/bash"]'
	echo "$debian_sha$mkimage_sha" >"$debian_img.key"
fi
preload=(kube-apiserver kube-controller-manager kube-scheduler kube-proxy etcd coredns pause)

# 5. Node image.
node_ref=$image_repo:$k8s_version
node_key=$( (
	echo "$kind_version" "$debian_sha" "$mkimage_sha"
	sha "$here/build.sh" "$here/files/default-cni.yaml" "$here/files/containerd-runsc.toml" "$here/files/runsc.toml"
	(cd "$kind_files" && find . -type f -print0 | sort -z | xargs -0 sha256sum)
	for b in containerd containerd-shim-runc-v2 ctr crictl host-local loopback ptp portmap runsc containerd-shim-runsc-v1; do sha "$cache/bin/$b"; done
	for b in kubelet kubeadm kubectl; do sha "$testbin/$b"; done
	for i in "${preload[@]}"; do cat "$out/images/$i.tar.key"; done
	cat "$debian_img.key"
) | strsha)
node_archive=$out/node-image.tar
label=dev.kaic.kindnode.inputs
if [[ $(docker image inspect -f "{{index .Config.Labels \"$label\"}}" "$node_ref" 2>/dev/null) == "$node_key" ]]; then
	say "node image $node_ref is up to date ($(($(date +%s) - t0))s)"
	echo "$node_ref"
	exit 0
fi
if [[ ! -s $node_archive || $(cat "$node_archive.key" 2>/dev/null) != "$node_key" ]]; then
	say "assembling node image $node_ref ..."
	s=$(date +%s)
	r=$work/rootfs
	mkdir -p "$r"
	tar --numeric-owner -xpf "$debian_tar" -C "$r"

	# What kind's base image Dockerfile does, with its files from the module.
	install -m0755 "$kind_files"/usr/local/bin/* "$r/usr/local/bin/"
	mkdir -p "$r/kind/bin" "$r/etc/containerd" "$r/etc/systemd/system/kubelet.service.d" "$r/etc/kubernetes/manifests"
	install -m0644 "$kind_files/kind/README.txt" "$r/kind/"
	install -m0755 "$kind_files"/kind/bin/* "$r/kind/bin/"
	install -m0644 "$kind_files/etc/crictl.yaml" "$r/etc/"
	install -m0644 "$kind_files"/etc/containerd/* "$r/etc/containerd/"
	install -m0644 "$kind_files"/etc/default/* "$r/etc/default/"
	install -m0644 "$kind_files"/etc/sysctl.d/* "$r/etc/sysctl.d/"
	install -m0644 "$kind_files"/etc/systemd/system/*.service "$kind_files"/etc/systemd/system/*.slice "$r/etc/systemd/system/"
	install -m0644 "$kind_files"/etc/systemd/system/kubelet.service.d/* "$r/etc/systemd/system/kubelet.service.d/"
	find "$r/lib/systemd/system/sysinit.target.wants/" -name systemd-tmpfiles-setup.service -delete
	rm -f "$r"/lib/systemd/system/multi-user.target.wants/* "$r"/etc/systemd/system/*.wants/* \
		"$r"/lib/systemd/system/local-fs.target.wants/* "$r"/lib/systemd/system/sockets.target.wants/*udev* \
		"$r"/lib/systemd/system/sockets.target.wants/*initctl* "$r"/lib/systemd/system/basic.target.wants/*
	echo "ReadKMsg=no" >>"$r/etc/systemd/journald.conf"
	ln -sf /lib/systemd/systemd "$r/sbin/init"
	chroot "$r" systemctl enable kubelet.service containerd.service undo-mount-hacks.service >/dev/null 2>&1
	chroot "$r" systemctl mask systemd-binfmt.service >/dev/null 2>&1

	# Runtime, tools, Kubernetes node binaries.
	install -m0755 "$cache"/bin/{containerd,containerd-shim-runc-v2,ctr,crictl,runsc,containerd-shim-runsc-v1} "$r/usr/local/bin/"
	mkdir -p "$r/opt/cni/bin" "$r/etc/cni/net.d"
	install -m0755 "$cache"/bin/{host-local,loopback,ptp,portmap} "$r/opt/cni/bin/"
	install -m0755 "$testbin"/{kubelet,kubeadm,kubectl} "$r/usr/bin/"
	"$cache/bin/ctr" oci spec |
		jq '.hooks.createContainer[.hooks.createContainer | length] |= . + {"path": "/kind/bin/mount-product-files.sh"}' |
		jq 'del(.process.rlimits)' >"$r/etc/containerd/cri-base.json"
	# Let containerd clamp pod oom_score_adj to its own value instead of
	# failing when the engine's containers lack CAP_SYS_RESOURCE.
	sed -i 's/restrict_oom_score_adj = false/restrict_oom_score_adj = true/' "$r/etc/containerd/config.toml"
	# gVisor as runtime handler runsc (RuntimeClass gvisor), with its
	# runsc flags for a node that is itself a container.
	cat "$here/files/containerd-runsc.toml" >>"$r/etc/containerd/config.toml"
	install -m0644 "$here/files/runsc.toml" "$r/etc/containerd/runsc.toml"
	# Pod networking: kind applies this manifest (the image's default CNI).
	mkdir -p "$r/kind/manifests"
	install -m0644 "$here/files/default-cni.yaml" "$r/kind/manifests/default-cni.yaml"
	printf '%s' "$k8s_version" >"$r/kind/version"

	# Preload the component images into the node's containerd (k8s.io
	# namespace), with a containerd on this host pointed at the rootfs.
	sock=$work/containerd.sock
	cat >"$work/preload.toml" <<EOF
version = 3
root = "$r/var/lib/containerd"
state = "$work/containerd-state"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.cri.v1.images", "io.containerd.cri.v1.runtime", "io.containerd.podsandbox.controller.v1.podsandbox"]
[grpc]
  address = "$sock"
[ttrpc]
  address = "$sock.ttrpc"
EOF
	"$cache/bin/containerd" --config "$work/preload.toml" >"$work/preload.log" 2>&1 &
	ctrd_pid=$!
	for _ in $(seq 50); do [[ -S $sock ]] && break; sleep 0.2; done
	[[ -S $sock ]] || die "preload containerd did not start: $(tail -5 "$work/preload.log")"
	# The Debian image runs the default CNI's daemon (files/default-cni.yaml).
	archives=("$debian_img")
	for i in "${preload[@]}"; do archives+=("$out/images/$i.tar"); done
	for a in "${archives[@]}"; do
		"$cache/bin/ctr" -a "$sock" -n k8s.io images import --label=io.cri-containerd.pinned=pinned \
			--all-platforms --no-unpack --digests "$a" >>"$work/preload.log" 2>&1 ||
			die "importing $a failed: $(tail -5 "$work/preload.log")"
	done
	kill "$ctrd_pid"
	wait "$ctrd_pid" || true
	ctrd_pid=
	rm -f "$r/etc/resolv.conf"
	: >"$r/etc/machine-id"

	dtar -C "$r" -cf "$work/node-rootfs.tar" .
	rm -rf "$r"
	"$mkimage" -out "$node_archive" -layer "$work/node-rootfs.tar" -tag "$node_ref" \
		-env container=docker -env "$PATH_ENV" -stopsignal SIGRTMIN+3 \
		-entrypoint '["/usr/local/bin/entrypoint","/sbin/init"]' -label "$label=$node_key"
	echo "$node_key" >"$node_archive.key"
	say "node image archive assembled in $(($(date +%s) - s))s"
fi
say "loading $node_ref into docker ..."
old_id=$(docker image inspect -f '{{.Id}}' "$node_ref" 2>/dev/null || true)
docker load -i "$node_archive" >/dev/null
# drop the image this one replaces, unless a container still uses it
if [[ -n $old_id && $old_id != $(docker image inspect -f '{{.Id}}' "$node_ref") ]]; then
	docker rmi "$old_id" >/dev/null 2>&1 || true
fi
say "done in $(($(date +%s) - t0))s"
echo "$node_ref"
