#!/usr/bin/env bash
# Runs every fuzz target in the module for N seconds each (default 10), one
# target at a time, and stops at the first failure, naming the target. A
# failing input is written to the package's testdata/fuzz/<FuzzName>/ by
# `go test`; check it in with the fix so that `go test ./...` keeps it.
#
#   scripts/fuzz.sh        # 10 s per target
#   scripts/fuzz.sh 60     # 60 s per target
set -euo pipefail
cd "$(dirname "$0")/.."

secs="${1:-10}"
if ! [[ "$secs" =~ ^[0-9]+$ ]] || [ "$secs" -eq 0 ]; then
	echo "usage: $0 [seconds per target, default 10]" >&2
	exit 2
fi
GO="${GO:-go}"
# Minimizing each newly interesting input can take up to a minute by
# default, which would swallow a short run; crashers are still minimized.
minimize="${FUZZ_MINIMIZE_TIME:-5s}"

# "./pkg FuzzName" for every fuzz target, in a stable order.
mapfile -t targets < <(
	grep -rE --include='*_test.go' -o '^func Fuzz[A-Za-z0-9_]*\(f \*testing\.F\)' \
		--exclude-dir=testdata --exclude-dir=.git . |
		sed -E 's#^(.*)/[^/]+_test\.go:func (Fuzz[A-Za-z0-9_]*)\(.*#\1 \2#' | sort -u
)
if [ "${#targets[@]}" -eq 0 ]; then
	echo "fuzz: no fuzz targets found" >&2
	exit 1
fi

echo "fuzz: ${#targets[@]} targets, ${secs}s each"
for t in "${targets[@]}"; do
	pkg="${t% *}" name="${t#* }"
	echo "fuzz: $pkg $name"
	if ! "$GO" test -run '^$' -fuzz "^${name}\$" -fuzztime "${secs}s" -fuzzminimizetime "$minimize" "$pkg"; then
		echo "fuzz: FAIL $name in $pkg (failing input under $pkg/testdata/fuzz/$name/)" >&2
		exit 1
	fi
done
echo "fuzz: all ${#targets[@]} targets passed"
