#!/usr/bin/env bash
# Runs `go test` with the arguments given, passing its output through, and
# ends with one line that says how well the packages ran side by side:
#
#   test: wall_s=… slowest_package=… slowest_package_s=… wall_over_slowest=… sum_over_wall=… packages_run=… packages_cached=…
#
# wall_over_slowest is the run's wall time over the longest package that
# ran (cached results do not count): 1.00 would mean nothing waited for
# anything but the slowest package. sum_over_wall is the packages' summed
# time over the wall time, how many ran at once on average. The exit
# status is go test's.
set -uo pipefail

go=${GO:-go}
log=$(mktemp)
trap 'rm -f "$log"' EXIT

start=$(date +%s.%N)
"$go" test "$@" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
end=$(date +%s.%N)

# Package result lines: "ok  \t<pkg>\t12.345s", "FAIL\t<pkg>\t12.345s",
# "ok  \t<pkg>\t(cached)".
awk -v start="$start" -v end="$end" -F'\t' '
	($1 ~ /^(ok|FAIL) *$/) && NF >= 3 {
		if ($3 ~ /cached/) { cached++; next }
		if ($3 ~ /^[0-9.]+s/) {
			s = $3; sub(/s.*/, "", s); s += 0
			run++; sum += s
			if (s > max) { max = s; slow = $2 }
		}
	}
	END {
		wall = end - start
		ratio = "n/a"; conc = "n/a"
		if (max > 0) ratio = sprintf("%.2f", wall / max)
		if (wall > 0) conc = sprintf("%.2f", sum / wall)
		if (slow == "") slow = "none"
		printf "test: wall_s=%.1f slowest_package=%s slowest_package_s=%.1f wall_over_slowest=%s sum_over_wall=%s packages_run=%d packages_cached=%d\n", wall, slow, max, ratio, conc, run, cached
	}' "$log"
exit "$rc"
