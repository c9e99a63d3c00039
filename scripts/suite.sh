#!/usr/bin/env bash
# Runs the Ginkgo integration suite for `make suite`. Settings come from the
# environment (OUT, PROCS, LABELS, RULES, TIMEOUT, GO), never through shell
# quoting, so a label filter with a quote or a rules path with a space
# passes intact. Bad input is one line and exit 2, before anything is built.
#
# SIGTERM or SIGINT to this script (make passes SIGTERM on to it; docker
# stop, systemd and CI cancels signal only the top process) reaches every
# Ginkgo process: they run their cleanups, and what is left after a bounded
# wait is killed and swept.
set -uo pipefail
cd "$(dirname "$0")/.."

GO=${GO:-go}
OUT=${OUT:-out}
PROCS=${PROCS:-4}
LABELS=${LABELS:-}
RULES=${RULES:-}
TIMEOUT=${TIMEOUT:-20m}

die() { echo "suite: $*" >&2; exit 2; }

# The stamp make deletes on SIGINT (see the Makefile) exists from the start,
# so an interrupt during the build below is not lost.
stamp=${1:-}
[ -n "$stamp" ] && { mkdir -p -- "$(dirname -- "$stamp")" && touch -- "$stamp"; }

[ "$(id -u)" = 0 ] || { echo "suite: needs root (it builds network namespaces and runs iptables): run \`sudo make test\`" >&2; exit 1; }
[[ "$PROCS" =~ ^[1-9][0-9]*$ ]] || die "PROCS=$PROCS: want a whole number of processes, 1 or more"
if [ -n "$RULES" ]; then
	[ -f "$RULES" ] || die "RULES=$RULES: no such file"
	[ -s "$RULES" ] || die "RULES=$RULES: the file is empty"
	export TFOLAB_RULES
	TFOLAB_RULES=$(realpath -- "$RULES")
fi
mkdir -p "$OUT" || die "OUT=$OUT: cannot create the folder"
OUT=$(realpath -- "$OUT")
export TFOLAB_OUT=$OUT
bin=$(mktemp -d)
trap 'rm -rf "$bin"; [ -z "$stamp" ] || rm -f -- "$stamp"' EXIT
"$GO" build -o "$bin/tfolab" ./cmd/tfolab || exit 1
"$bin/tfolab" check-labels "$LABELS" || exit 2
export TFOLAB_BIN=$bin/tfolab # the keep spec runs it

flags=(-p "--procs=$PROCS" --randomize-all "--timeout=$TIMEOUT" "--output-dir=$OUT" --junit-report=junit.xml --poll-progress-after=60s)
[ -t 2 ] || flags+=(--no-color)
[ -n "$LABELS" ] && flags+=("--label-filter=$LABELS")

before=$("$bin/tfolab" namespaces 2>/dev/null)

# Ginkgo in a process group of its own, so one signal reaches the CLI and
# every worker; the workers handle SIGTERM like SIGINT (cleanups run).
set -m
"$GO" tool ginkgo "${flags[@]}" . &
ginkgo=$!
set +m
watcher=""
stop() {
	[ -n "$watcher" ] && kill "$watcher" 2>/dev/null
	echo "suite: $1: stopping every Ginkgo process" >&2
	kill -TERM -- "-$ginkgo" 2>/dev/null
	for _ in $(seq 1 100); do # 10 s for cleanups to run
		kill -0 -- "-$ginkgo" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL -- "-$ginkgo" 2>/dev/null
	wait "$ginkgo" 2>/dev/null
	"$bin/tfolab" sweep >/dev/null 2>&1 || echo "suite: some lab namespaces remain; \`make clean\` removes them" >&2
	exit 130
}
trap 'stop SIGTERM' TERM
trap 'stop SIGINT' INT
# make deletes the stamp it asked for when it gets SIGINT, then waits for
# us: take the deletion as the interrupt.
if [ -n "$stamp" ]; then
	[ -e "$stamp" ] || stop SIGINT
	(while [ -e "$stamp" ] && kill -0 "$$" 2>/dev/null; do sleep 0.2; done
	 kill -0 "$ginkgo" 2>/dev/null && kill -INT "$$") &
	watcher=$!
fi
wait "$ginkgo"
rc=$?
[ -n "$watcher" ] && kill "$watcher" 2>/dev/null
[ -n "$stamp" ] && rm -f -- "$stamp"
# A worker killed mid-spec leaves its namespaces: new since the start, and
# their owner (the PID in the name) gone or a zombie. Other runs' are not ours.
left=0
for ns in $("$bin/tfolab" namespaces 2>/dev/null); do
	grep -qxF -- "$ns" <<<"$before" && continue
	pid=${ns#tfo-}
	pid=${pid%%-*}
	state=$(sed -n 's/^[0-9]* (.*) \([A-Z]\) .*/\1/p' "/proc/$pid/stat" 2>/dev/null)
	case "$state" in "" | Z | X) left=$((left + 1)) ;; esac
done
if [ "$left" -gt 0 ]; then
	echo "suite: a worker was killed and left $left lab namespace(s) behind; \`make clean\` removes them" >&2
	rc=1
fi
"$bin/tfolab" junit-summary "$OUT/junit.xml" || rc=1
exit "$rc"
