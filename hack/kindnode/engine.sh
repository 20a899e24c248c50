#!/usr/bin/env bash
# A second, private Docker engine for kind nodes on hosts where
# `docker run --privileged` fails with
#   runc create failed: unable to start container process: unable to apply caps: operation not permitted
# because a capability (here CAP_SYS_RESOURCE) is missing from the host's
# capability bounding set: dockerd 20.10 asks runc for every capability the
# kernel knows. The private engine uses the same dockerd binary with an OCI
# runtime wrapper (files/runc-capfilter) that drops the capabilities the
# bounding set does not hold, then runs runc. The host's own engine and its
# configuration are not touched.
#
#   hack/kindnode/engine.sh check          # exit 0 when the host needs this engine
#   eval "$(hack/kindnode/engine.sh start)" # start it, export DOCKER_HOST
#   hack/kindnode/engine.sh stop           # stop it (images stay in its data root)
#
# Its networks take their subnets from one pool (KAIC_ENGINE_POOL). Where the
# host's FORWARD chain drops bridged traffic (the host engine sets policy DROP
# and br_netfilter passes bridged frames through it), traffic between the
# nodes of a multi-node cluster would be dropped, and so would pod traffic
# between nodes (from a node address to a pod address, and back): start
# inserts two FORWARD rules accepting frames bridged within one network from
# or to that pool, and stop removes them.
#
# Environment: KAIC_ENGINE_ROOT (data root, default /var/lib/kaic-engine),
# KAIC_ENGINE_RUN (sockets and state, default /run/kaic-engine),
# KAIC_ENGINE_POOL (address pool of its networks, default 172.29.0.0/16).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
data=${KAIC_ENGINE_ROOT:-/var/lib/kaic-engine}
run=${KAIC_ENGINE_RUN:-/run/kaic-engine}
sock=$run/docker.sock
pool=${KAIC_ENGINE_POOL:-172.29.0.0/16}
forward_rules=("-s $pool" "-d $pool")
forward_rule() { # -s|-d POOL
	echo FORWARD -m physdev --physdev-is-bridged "$@" -m comment --comment kaic-engine -j ACCEPT
}

say() { echo "engine: $*" >&2; }

missing_caps() {
	local bnd last i
	bnd=$((16#$(awk '/^CapBnd/ {print $2}' /proc/self/status)))
	last=$(cat /proc/sys/kernel/cap_last_cap)
	for ((i = 0; i <= last; i++)); do
		((bnd >> i & 1)) || echo "$i"
	done
}

case ${1:-} in
check)
	m=$(missing_caps | tr '\n' ' ')
	if [[ -n $m ]]; then
		say "capabilities missing from the bounding set: $m- privileged containers need the private engine"
		exit 0
	fi
	say "full capability bounding set - the host engine can run kind nodes"
	exit 1
	;;
start)
	[[ $(id -u) == 0 ]] || { say "must run as root"; exit 1; }
	mkdir -p "$run" "$data"
	if command -v iptables >/dev/null; then
		for sel in "${forward_rules[@]}"; do
			# shellcheck disable=SC2046,SC2086 # word splitting intended
			iptables -C $(forward_rule $sel) 2>/dev/null || iptables -I $(forward_rule $sel)
		done
	fi
	if [[ -S $sock ]] && DOCKER_HOST=unix://$sock docker info >/dev/null 2>&1; then
		echo "export DOCKER_HOST=unix://$sock"
		exit 0
	fi
	install -m0755 "$here/files/runc-capfilter" "$run/runc-capfilter"
	echo '{}' >"$run/daemon.json"
	# No iptables management, no default bridge: the host engine owns those.
	# kind's own network is created on demand; ports are published by the
	# userland proxy.
	nohup dockerd --config-file "$run/daemon.json" --data-root "$data" --exec-root "$run/exec" \
		--pidfile "$run/docker.pid" -H "unix://$sock" --iptables=false --ip-masq=false --bridge=none \
		--storage-driver=overlay2 --default-address-pool "base=$pool,size=24" --add-runtime "capfilter=$run/runc-capfilter" --default-runtime=capfilter \
		>"$run/dockerd.log" 2>&1 &
	for _ in $(seq 60); do
		DOCKER_HOST=unix://$sock docker info >/dev/null 2>&1 && break
		sleep 0.5
	done
	DOCKER_HOST=unix://$sock docker info >/dev/null 2>&1 || { say "dockerd did not start, see $run/dockerd.log"; exit 1; }
	echo "export DOCKER_HOST=unix://$sock"
	;;
stop)
	if command -v iptables >/dev/null; then
		for sel in "${forward_rules[@]}"; do
			# shellcheck disable=SC2046,SC2086 # word splitting intended
			while iptables -C $(forward_rule $sel) 2>/dev/null; do iptables -D $(forward_rule $sel); done
		done
	fi
	[[ -f $run/docker.pid ]] || exit 0
	pid=$(cat "$run/docker.pid")
	kill "$pid" 2>/dev/null || true
	for _ in $(seq 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
	;;
*)
	echo "usage: $0 check|start|stop" >&2
	exit 2
	;;
esac
