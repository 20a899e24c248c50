#!/usr/bin/env bash
# `make e2e-offline`: builds what the offline e2e suite needs and is missing
# (the kind node image, hack/kindnode/build.sh, and the stack component
# images and charts, hack/stackimages/build.sh, all cached), starts the private
# Docker engine when the host engine cannot run privileged containers
# (hack/kindnode/engine.sh check), runs the suite against the kaic binary in
# bin/, and stops that engine again if this script started it.
#
# Environment: the suite's KAIC_BIN, KAIC_CHECKLIST_DIR, KAIC_E2E_OUT;
# E2E_RUN selects tests (go test -run, default TestOffline).
#
# With arguments, it runs them as a command in that setting instead of the
# suite (make bench-kind: e2e/offline.sh go run ./hack/benchkind).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "e2e-offline: $*" >&2; }
# One run at a time on a machine: the runs share the engine and the cluster name.
exec 8>"${TMPDIR:-/tmp}/kaic-e2e-offline.lock"
flock -n 8 || { say "another make e2e-offline is running: waiting for it"; flock 8; }
t0=$(date +%s)
started_engine=false
cluster=$(awk '$1=="name:" && seen {print $2; exit} /^    kind:/ {seen=1}' e2e/testdata/kind-dra-offline.yaml)

finish() {
	local rc=$?
	# A suite killed by its timeout skips its own cleanup: make sure no node
	# container of the e2e cluster created by this run survives, and fail if
	# one did. Older ones are not this run's: they are reported, not removed.
	if [[ -n ${cluster:-} ]] && docker info >/dev/null 2>&1; then
		for c in $(docker ps -aq --filter "label=io.x-k8s.kind.cluster=$cluster"); do
			rc=1
			if (($(date -d "$(docker inspect -f '{{.Created}}' "$c")" +%s) >= t0)); then
				say "node container $c of $cluster left behind: removing it"
				docker rm -f -v "$c" >/dev/null
			else
				say "node container $c of $cluster predates this run: left alone (kaic down <its run dir> removes it)"
			fi
		done
	fi
	if $started_engine; then
		hack/kindnode/engine.sh stop
		say "private engine stopped"
	fi
	say "finished in $(($(date +%s) - t0))s (exit $rc)"
	exit "$rc"
}
trap finish EXIT

if [[ -z ${DOCKER_HOST:-} ]] && hack/kindnode/engine.sh check 2>/dev/null; then
	sock=${KAIC_ENGINE_RUN:-/run/kaic-engine}/docker.sock
	DOCKER_HOST=unix://$sock docker info >/dev/null 2>&1 || started_engine=true
	eval "$(hack/kindnode/engine.sh start)"
	say "using the private engine ($DOCKER_HOST): the host engine cannot run privileged containers"
fi

s=$(date +%s)
image=$(hack/kindnode/build.sh)
say "node image $image ready after $(($(date +%s) - s))s"

# Stack component images and charts the overlay names under bin/stackimages.
s=$(date +%s)
hack/stackimages/build.sh --link bin/stackimages >/dev/null
say "stack images ready after $(($(date +%s) - s))s"

s=$(date +%s)
if (($# > 0)); then
	"$@"
	say "$1 took $(($(date +%s) - s))s"
	exit 0
fi
KAIC_E2E_OFFLINE=1 go test -tags e2e -count=1 -timeout 60m -v -run "${E2E_RUN:-TestOffline}" ./e2e/
say "suite took $(($(date +%s) - s))s"
