#!/usr/bin/env bash
# Proves that a run killed with SIGKILL leaves nothing behind once
# `make clean` has run: no lab namespace (and so no link, route, rule or
# process of the lab), and a root namespace byte-for-byte as before.
#
# It starts the baseline suite in its own process group, waits until lab
# namespaces exist, SIGKILLs the whole group (the ginkgo CLI and its test
# processes: nothing gets to run a cleanup), then runs `make clean`.
set -euo pipefail
cd "$(dirname "$0")/.."

GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
export GOFLAGS=${GOFLAGS:--buildvcs=false} GOTOOLCHAIN=${GOTOOLCHAIN:-local}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

"$GO" build -o "$work/tfolab" ./cmd/tfolab
"$GO" tool ginkgo build -o "$work/" . >/dev/null
"$work/tfolab" host-state >"$work/before"

lab_namespaces() { "$work/tfolab" list; }

leftovers=0
for attempt in 1 2 3; do
	(cd "$work" && exec setsid ./tfolab.test -ginkgo.label-filter=baseline >"$work/run.log" 2>&1) &
	runner=$!
	# Bounded wait for the first lab namespace (the suite builds one within
	# milliseconds of starting).
	for _ in $(seq 1 200); do
		[ -n "$(lab_namespaces)" ] && break
		sleep 0.05
	done
	kill -KILL -- "-$runner" 2>/dev/null || kill -KILL "$runner" 2>/dev/null || true
	wait "$runner" 2>/dev/null || true
	leftovers=$(lab_namespaces | wc -l)
	[ "$leftovers" -gt 0 ] && break
	echo "attempt $attempt: the kill landed between two labs; trying again"
done
if [ "$leftovers" -eq 0 ]; then
	echo "check-killed-run: FAIL: could not catch the suite with a lab alive" >&2
	exit 1
fi
echo "check-killed-run: SIGKILL left $leftovers lab namespace(s):"
lab_namespaces | sed 's/^/  /'

make --no-print-directory clean GO="$GO" OUT="$work/out"

remaining=$(lab_namespaces)
if [ -n "$remaining" ]; then
	echo "check-killed-run: FAIL: namespaces still present after make clean:" >&2
	echo "$remaining" >&2
	exit 1
fi
"$work/tfolab" host-state >"$work/after"
if ! diff -u "$work/before" "$work/after"; then
	echo "check-killed-run: FAIL: the root namespace changed" >&2
	exit 1
fi
echo "check-killed-run: ok: no lab namespace left, root namespace unchanged"
