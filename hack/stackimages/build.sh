#!/usr/bin/env bash
# Builds stack component images from the Go module proxy as image archives,
# and assembles the Helm charts that run them, into a cache directory outside
# the repository. Prints the archive paths on stdout, one per line. Each
# recipe is a directory next to this script with a recipe.sh (README.md
# describes the interface).
#
#   hack/stackimages/build.sh [RECIPE...]            # build what is missing or stale
#   hack/stackimages/build.sh --check [RECIPE...]    # exit 1 naming what is missing or stale; build nothing
#   hack/stackimages/build.sh --link PATH [RECIPE...] # also point the symlink PATH at the cache
#
# Environment:
#   KAIC_STACKIMAGES_CACHE  cache directory (default $XDG_CACHE_HOME/kaic/stackimages)
#   KAIC_CA_BUNDLE          CA bundle of the base layer (default /etc/ssl/certs/ca-certificates.crt)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${KAIC_STACKIMAGES_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kaic/stackimages}
ca_bundle=${KAIC_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
PATH_ENV=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

say() { echo "stackimages: $*" >&2; }
die() { say "$*"; exit 1; }
sha() { sha256sum "$@" | cut -d' ' -f1; }
strsha() { sha256sum | cut -d' ' -f1; }
# tar with fixed ownership, order and times, so equal trees give equal layers
dtar() { tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner "$@"; }

check_only=false
link=
while (($# > 0)); do
	case $1 in
	--check) check_only=true; shift ;;
	--link) link=${2:?--link needs a path}; shift 2 ;;
	-h | --help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	-*) die "unknown flag $1" ;;
	*) break ;;
	esac
done
recipes=("$@")
if ((${#recipes[@]} == 0)); then
	for f in "$here"/*/recipe.sh; do recipes+=("$(basename "$(dirname "$f")")"); done
fi
for r in "${recipes[@]}"; do
	[[ -f $here/$r/recipe.sh ]] || die "no recipe $r ($here/$r/recipe.sh missing)"
done
command -v go >/dev/null || die "go not found (Go 1.26 builds the images' binaries)"
if ! command -v jq >/dev/null; then
	[[ $(id -u) == 0 ]] && command -v apt-get >/dev/null || die "jq not found (apt-get install jq)"
	echo "stackimages: installing jq with apt-get" >&2
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq jq >/dev/null || die "apt-get install jq failed"
fi
for t in tar sha256sum; do command -v "$t" >/dev/null || die "$t not found"; done
[[ -s $ca_bundle ]] || die "CA bundle $ca_bundle not found (KAIC_CA_BUNDLE)"

mkdir -p "$cache/bin" "$cache/images" "$cache/charts"
exec 9>"$cache/.lock"
flock 9
t0=$(date +%s)
gover=$(go version)
# Each stale item adds a line here; --check exits 1 when there is any.
missing_file=$(mktemp)
work=$(mktemp -d "$cache/work.XXXXXX")
trap 'rm -rf "$work" "$missing_file"' EXIT
stale() { echo "$1 ($2)" >>"$missing_file"; }

# mkimage, from hack/kindnode/tools.
tools=$repo/hack/kindnode/tools
mkimage=$cache/bin/mkimage
mkimage_stamp=$( (echo "$gover"; cat "$tools/go.mod" "$tools/go.sum" "$tools"/mkimage/*.go) | strsha)
if [[ ! -x $mkimage || $(cat "$cache/bin/.mkimage.stamp" 2>/dev/null) != "$mkimage_stamp" ]]; then
	if $check_only; then
		stale mkimage "missing or stale"
	else
		say "building mkimage ..."
		(cd "$tools" && CGO_ENABLED=0 go build -trimpath -o "$mkimage" ./mkimage)
		echo "$mkimage_stamp" >"$cache/bin/.mkimage.stamp"
	fi
fi

# Base layer: /tmp, users, name service switch, CA bundle.
base_layer=$work/base.tar
mkdir -p "$work/base"/{tmp,etc/ssl/certs,root,home/nonroot}
chmod 1777 "$work/base/tmp"
printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$work/base/etc/passwd"
printf 'root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n' >"$work/base/etc/group"
echo 'hosts: files dns' >"$work/base/etc/nsswitch.conf"
install -m0644 "$ca_bundle" "$work/base/etc/ssl/certs/ca-certificates.crt"
dtar -C "$work/base" -cf "$base_layer" .
base_sha=$(sha "$base_layer")

archives=()

# --- the functions recipes call (README.md) ---------------------------------

# gomodule DIR: build Go packages in the wrapper module in DIR (relative to
# the recipe directory) instead of the recipe directory, e.g. a module of
# hack/testbin that already pins the version.
gomodule() {
	gomod_dir=$(cd "$1" && pwd)
	[[ -f $gomod_dir/go.mod ]] || die "$recipe: no go.mod in $gomod_dir"
}

# modversion MODULE: the version the recipe's go.mod requires.
modversion() {
	local v
	v=$(cd "$gomod_dir" && go mod edit -json | jq -r --arg m "$1" '.Require[]? | select(.Path == $m) | .Version')
	[[ -n $v ]] || die "$recipe: go.mod requires no $1"
	echo "$v"
}

# moddir MODULE: the module's directory in the module cache, at the version
# the recipe's go.mod requires.
moddir() {
	local d
	d=$(cd "$gomod_dir" && go mod download -json "$1@$(modversion "$1")" | jq -r .Dir)
	[[ -d $d ]] || die "$recipe: module $1 not downloaded"
	echo "$d"
}

# gobuild PACKAGE LDFLAGS TAGS: builds PACKAGE in the recipe module unless
# its stamp matches; sets gobuild_out to the binary path.
gobuild() {
	local pkg=$1 ldflags="-s -w${2:+ $2}" tags=$3 name stamp dir s
	name=$(basename "$pkg")
	[[ $name != . ]] || name=$recipe
	dir=$cache/bin/$recipe
	mkdir -p "$dir"
	gobuild_out=$dir/$name
	stamp=$( (
		echo "$gover" "$pkg" "$ldflags" "$tags" -buildvcs=false
		cd "$gomod_dir"
		cat go.mod go.sum
		find . -name '*.go' -not -path './chart/*' -print0 | sort -z | xargs -0r sha256sum
	) | strsha)
	[[ -x $gobuild_out && $(cat "$dir/.$name.stamp" 2>/dev/null) == "$stamp" ]] && return 0
	if $check_only; then
		stale "$recipe binary $name" "missing or stale"
		return 0
	fi
	say "building $name ($pkg) ..."
	s=$(date +%s)
	(cd "$gomod_dir" && CGO_ENABLED=0 GOFLAGS="-mod=mod -buildvcs=false" go build -trimpath -ldflags "$ldflags" ${tags:+-tags "$tags"} -o "$dir/.$name.tmp" "$pkg")
	mv -f "$dir/.$name.tmp" "$gobuild_out"
	echo "$stamp" >"$dir/.$name.stamp"
	say "built $name in $(($(date +%s) - s))s"
}

# image NAME REF [flags]: see README.md.
image() {
	local name=$1 ref=$2 ldflags= tags= base=base entrypoint= first= user=65532:65532
	local -a gos=() files=() cfg=() envs=("$PATH_ENV")
	shift 2
	while (($# > 0)); do
		case $1 in
		-go) gos+=("$2") ;;
		-file) files+=("$2") ;;
		-ldflags) ldflags=$2 ;;
		-tags) tags=$2 ;;
		-base) base=$2 ;;
		-entrypoint) entrypoint=$2 ;;
		-cmd) cfg+=(-cmd "$2") ;;
		-user) user=$2 ;;
		-workdir) cfg+=(-workdir "$2") ;;
		-env) envs+=("$2") ;;
		*) die "$recipe: image $name: unknown flag $1" ;;
		esac
		shift 2
	done
	[[ $base == base || $base == none ]] || die "$recipe: image $name: -base base|none"
	local archive=$cache/images/$name.tar key f src dst
	local -a content=()
	for f in "${gos[@]}"; do
		gobuild "${f%%=*}" "$ldflags" "$tags"
		content+=("$gobuild_out=${f#*=}")
		[[ -n $first ]] || first=${f#*=}
	done
	for f in "${files[@]}"; do
		src=${f%%=*}
		[[ $src == /* ]] || src=$PWD/$src
		[[ -f $src ]] || die "$recipe: image $name: $src not found"
		content+=("$src=${f#*=}")
	done
	[[ -n $entrypoint || -z $first ]] || entrypoint="[\"$first\"]"
	[[ -z $entrypoint ]] || cfg+=(-entrypoint "$entrypoint")
	cfg+=(-user "$user")
	for f in "${envs[@]}"; do cfg+=(-env "$f"); done
	archives+=("$archive")
	if $check_only && [[ ! -x $mkimage ]]; then
		[[ -s $archive ]] || stale "image $name" "$archive missing"
		return 0
	fi
	key=$( (
		echo "$ref" "$base" "${cfg[@]}" "$(sha "$mkimage")"
		[[ $base == none ]] || echo "$base_sha"
		for f in "${content[@]}"; do
			if [[ -e ${f%%=*} ]]; then echo "${f#*=}" "$(sha "${f%%=*}")"; else echo "${f#*=} missing"; fi
		done
	) | strsha)
	[[ -s $archive && $(cat "$archive.key" 2>/dev/null) == "$key" ]] && return 0
	if $check_only; then
		stale "image $name" "$archive missing or stale"
		return 0
	fi
	say "image $name ($ref) ..."
	local layer=$work/$name
	rm -rf "$layer"
	mkdir -p "$layer"
	for f in "${content[@]}"; do
		install -D -m0755 "${f%%=*}" "$layer${f#*=}"
	done
	dtar -C "$layer" -cf "$layer.tar" .
	local -a layers=()
	[[ $base == none ]] || layers+=(-layer "$base_layer")
	"$mkimage" -out "$archive" "${layers[@]}" -layer "$layer.tar" -tag "$ref" "${cfg[@]}"
	echo "$key" >"$archive.key"
	rm -rf "$layer" "$layer.tar"
}

# chart NAME SRC [flags]: see README.md.
chart() {
	local name=$1 src=$2 version= app_version= f s d key
	local -a adds=()
	shift 2
	while (($# > 0)); do
		case $1 in
		-version) version=$2 ;;
		-app-version) app_version=$2 ;;
		-add) adds+=("$2") ;;
		*) die "$recipe: chart $name: unknown flag $1" ;;
		esac
		shift 2
	done
	[[ $src == /* ]] || src=$PWD/$src
	[[ -f $src/Chart.yaml ]] || die "$recipe: chart $name: $src/Chart.yaml not found"
	local tmp=$work/chart-$name
	rm -rf "$tmp"
	cp -r "$src" "$tmp"
	chmod -R u+w "$tmp"
	[[ -z $version ]] || sed -i "s/^version:.*/version: $version/" "$tmp/Chart.yaml"
	[[ -z $app_version ]] || sed -i "s/^appVersion:.*/appVersion: \"$app_version\"/" "$tmp/Chart.yaml"
	for f in "${adds[@]}"; do
		s=${f%%=*} d=$tmp/${f#*=}
		[[ $s == /* ]] || s=$PWD/$s
		mkdir -p "$d"
		if [[ -d $s ]]; then
			cp "$s"/*.yaml "$d/"
		else
			cp "$s" "$d/"
		fi
	done
	chmod -R u+w,go+r "$tmp"
	key=$(cd "$tmp" && find . -type f -print0 | sort -z | xargs -0 sha256sum | strsha)
	local out=$cache/charts/$name
	[[ -f $out/Chart.yaml && $(cat "$cache/charts/.$name.key" 2>/dev/null) == "$key" ]] && return 0
	if $check_only; then
		stale "chart $name" "$out missing or stale"
		return 0
	fi
	say "chart $name ..."
	rm -rf "$out.old"
	[[ ! -e $out ]] || mv "$out" "$out.old"
	mv "$tmp" "$out"
	rm -rf "$out.old"
	echo "$key" >"$cache/charts/.$name.key"
}

# --- run the recipes ---------------------------------------------------------
archive_list=$work/archives
: >"$archive_list"
for recipe in "${recipes[@]}"; do
	(
		cd "$here/$recipe"
		gomod_dir=$PWD
		# shellcheck source=/dev/null
		source ./recipe.sh
		printf '%s\n' "${archives[@]}" >>"$archive_list"
	) || die "recipe $recipe failed"
done

if [[ -s $missing_file ]]; then
	say "missing from $cache:"
	sed 's/^/  /' "$missing_file" >&2
	$check_only && exit 1
	die "build left items missing"
fi
if [[ -n $link ]]; then
	if $check_only; then
		[[ $(readlink "$link" 2>/dev/null) == "$cache" ]] || { say "$link does not point at $cache"; exit 1; }
	else
		mkdir -p "$(dirname "$link")"
		ln -sfn "$cache" "$link"
	fi
fi
$check_only && say "cached images and charts present in $cache" || say "done in $(($(date +%s) - t0))s"
cat "$archive_list"
