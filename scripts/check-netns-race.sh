#!/usr/bin/env bash
# Proves that lab namespaces survive `ip netns` running beside them: on a
# /run/netns that is not yet a mount point, several processes bind and
# delete lab namespaces while `ip netns add/exec/del` run, and every delete
# succeeds with nothing left (issue 10, the /run/netns cover). Also checks
# that a namespace already covered by an earlier `ip netns add` is removed,
# or explained where the kernel forbids it.
#
# Everything happens in a private mount namespace (unshare -m) with a fresh
# tmpfs on /run, inside which the Go tests make their own again: the host's
# /run/netns is never touched, and whatever a failed round leaves vanishes
# with the mount namespace. Bounded by TIMEOUT per round (default 120 s);
# ROUNDS (default 5) repeats it. Needs root, iproute2 and util-linux.
set -euo pipefail
cd "$(dirname "$0")/.."

GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
export GOFLAGS=${GOFLAGS:--buildvcs=false} GOTOOLCHAIN=${GOTOOLCHAIN:-local}
ROUNDS=${ROUNDS:-5}
TIMEOUT=${TIMEOUT:-120}
TESTS='^(TestNewNamedPreparesRunDir|TestNamedRaceWithIPNetns|TestDeleteNamedRecoversCovered|TestDeleteNamedExplainsSharedCover)$'

fail() {
	echo "check-netns-race: FAIL: $*" >&2
	exit 1
}
[ "$(id -u)" -eq 0 ] || fail "needs root"
for tool in ip unshare timeout; do
	command -v "$tool" >/dev/null || fail "needs $tool"
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$GO" test -c -o "$work/netnsx.test" ./lab/netnsx/

# The mount layers of the host's /run/netns (its entries are left out: other
# runs on the host may add and remove namespaces meanwhile).
host_state() { awk '$5 == "/run/netns" {print $1, $2, $4, $9}' /proc/self/mountinfo; }
host_state >"$work/before"

for round in $(seq 1 "$ROUNDS"); do
	# The test binary re-runs each test in a mount namespace of its own;
	# the outer unshare keeps even a broken re-exec away from the host.
	if ! timeout --kill-after=10 "$TIMEOUT" unshare --mount --propagation private \
		sh -c 'mount -t tmpfs -o mode=0755 tfolab-race /run && exec "$0" "$@"' \
		"$work/netnsx.test" -test.run "$TESTS" -test.count=1 -test.v >"$work/round.log" 2>&1; then
		cat "$work/round.log" >&2
		fail "round $round failed (log above)"
	fi
	passed=$(grep -c '^--- PASS' "$work/round.log" || true)
	[ "$passed" -eq 4 ] || { cat "$work/round.log" >&2; fail "round $round: $passed of 4 tests passed"; }
	echo "check-netns-race: round $round: ok"
done

host_state >"$work/after"
diff -u "$work/before" "$work/after" || fail "the host's /run/netns changed"
if pgrep -f "$work/netnsx.test" >/dev/null; then
	fail "test processes still running: $(pgrep -f "$work/netnsx.test" | tr '\n' ' ')"
fi
echo "check-netns-race: ok: $ROUNDS rounds, every delete succeeded, the host's /run/netns untouched"
