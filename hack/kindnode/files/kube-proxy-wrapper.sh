#!/bin/sh
# Use the iptables backend that already holds rules in this network namespace.
legacy=$( (iptables-legacy-save; ip6tables-legacy-save) 2>/dev/null | grep -c '^-')
nft=$( (iptables-nft-save; ip6tables-nft-save) 2>/dev/null | grep -c '^-')
mode=nft
[ "$legacy" -gt "$nft" ] && mode=legacy
for t in iptables ip6tables; do update-alternatives --set "$t" "/usr/sbin/$t-$mode" >/dev/null 2>&1; done
exec /usr/local/bin/kube-proxy.bin "$@"
