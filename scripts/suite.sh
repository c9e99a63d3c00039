#!/usr/bin/env bash
# Runs the Ginkgo integration suite for `make suite`. Settings come from the
# environment (OUT, PROCS, LABELS, RULES, TIMEOUT, GO), never through shell
# quoting, so a label filter with a quote or a rules path with a space
# passes intact. Bad input is one line and exit 2, before anything is built;
# `scripts/suite.sh --check-args` (`make check-args`, which `make test` runs
# before the unit tests) makes only those checks.
#
# SIGTERM or SIGINT to this script (make passes SIGTERM on to it; docker
# stop, systemd and CI cancels signal only the top process) reaches every
# Ginkgo process: they run their cleanups, and what is left after a bounded
# wait is killed and swept.
#
# SIGKILL to the run's process group (GitLab Runner, `timeout -s KILL`)
# ends every process of the run too, although Ginkgo runs in a process
# group of its own: the Ginkgo CLI is tied to this script and each worker
# to the CLI with a parent-death signal (setpriv --pdeathsig, and
# pdeathsig_test.go), the lab's peers to their worker (lab/proc), and a
# guard outside the group, also tied to this script, kills the Ginkgo group
# and whatever still runs in the run's lab namespaces (an nginx worker
# whose master died), then exits. `make clean` removes the namespaces.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2

GO=${GO:-go}
OUT=${OUT:-out}
PROCS=${PROCS:-24}
LABELS=${LABELS:-}
RULES=${RULES:-}
TIMEOUT=${TIMEOUT:-20m}

die() { echo "suite: $*" >&2; exit 2; }

# The input checks, in one place: PROCS and RULES here, LABELS with the
# tfolab binary (check_labels).
check_args() {
	[[ "$PROCS" =~ ^[1-9][0-9]*$ ]] || die "PROCS=$PROCS: want a whole number of processes, 1 or more"
	if [ -n "$RULES" ]; then
		[ -f "$RULES" ] || die "RULES=$RULES: no such file"
		[ -s "$RULES" ] || die "RULES=$RULES: the file is empty"
	fi
}
check_labels() { "$1" check-labels "$LABELS" || exit 2; }

if [ "${1:-}" = --check-args ]; then
	check_args
	[ -z "$LABELS" ] && exit 0
	bin=$(mktemp -d)
	trap 'rm -rf "$bin"' EXIT
	"$GO" build -o "$bin/tfolab" ./cmd/tfolab || exit 1
	check_labels "$bin/tfolab"
	exit 0
fi

# The stamp make deletes on SIGINT (see the Makefile) exists from the start,
# so an interrupt during the build below is not lost.
stamp=${1:-}
[ -n "$stamp" ] && { mkdir -p -- "$(dirname -- "$stamp")" && touch -- "$stamp"; }

[ "$(id -u)" = 0 ] || { echo "suite: needs root (it builds network namespaces and runs iptables): run \`sudo make test\`" >&2; exit 1; }
check_args
if [ -n "$RULES" ]; then
	export TFOLAB_RULES
	TFOLAB_RULES=$(realpath -- "$RULES")
fi
mkdir -p "$OUT" || die "OUT=$OUT: cannot create the folder"
OUT=$(realpath -- "$OUT")
export TFOLAB_OUT=$OUT
bin=$(mktemp -d)
guard=""
end_guard() {
	[ -n "$guard" ] || return 0
	kill -TERM "$guard" 2>/dev/null && wait "$guard" 2>/dev/null
	guard=""
}
trap 'end_guard; rm -rf "$bin"; [ -z "$stamp" ] || rm -f -- "$stamp"' EXIT
"$GO" build -o "$bin/tfolab" ./cmd/tfolab || exit 1
check_labels "$bin/tfolab"
export TFOLAB_BIN=$bin/tfolab # the keep spec runs it
# The Ginkgo CLI (a tool in go.mod), run directly rather than through
# `go tool`, so that its parent is this script. It compiles the suite with
# the go on PATH: the same one as ours (sudo's secure_path may lack it).
"$GO" build -o "$bin/ginkgo" github.com/onsi/ginkgo/v2/ginkgo || exit 1
gobin=$(dirname -- "$(command -v -- "$GO")")
export PATH="$gobin:$PATH"

flags=(-p "--procs=$PROCS" --randomize-all "--timeout=$TIMEOUT" "--output-dir=$OUT" --junit-report=junit.xml --poll-progress-after=60s)
[ -t 2 ] || flags+=(--no-color)
[ -n "$LABELS" ] && flags+=("--label-filter=$LABELS")

before=$("$bin/tfolab" namespaces 2>/dev/null)
printf '%s\n' "$before" >"$bin/namespaces-before"

# guard SUITE GROUP BIN: waits, in a bash of its own, for SIGUSR1, which
# the kernel sends when this script (SUITE) dies, for any reason; SIGTERM
# ends it quietly (end_guard). On SIGUSR1 it kills the Ginkgo process group
# (the CLI, the workers, what they run in that group: go, tshark,
# iptables), then every process in a lab namespace made since the start
# whose owner (the PID in its name) is dead: a peer's own children, such as
# the nginx worker of a master that died, have no parent-death signal.
# Then it removes the build folder and exits; `make clean` deletes the
# namespaces themselves.
# shellcheck disable=SC2317 # run through declare -f in the guard's own bash
guard() {
	suite=$1 group=$2 bin=$3 sleeper=""
	declare -gA before=()
	while read -r ns; do [ -z "$ns" ] || before[$ns]=1; done <"$bin/namespaces-before"
	trap 'guard_fire; exit 0' USR1
	trap '[ -z "$sleeper" ] || kill "$sleeper" 2>/dev/null; exit 0' TERM
	trap '' INT HUP
	# This script may have died before setpriv set the signal.
	[ "$PPID" = "$suite" ] || { guard_fire; exit 0; }
	while :; do
		sleep 5 &
		sleeper=$!
		wait "$sleeper"
	done
}
# shellcheck disable=SC2317 # run through declare -f in the guard's own bash
guard_fire() {
	local members ns pid line state targets found waiting p
	trap '' USR1 TERM
	[ -z "$sleeper" ] || kill "$sleeper" 2>/dev/null
	members=" $(pgrep -g "$group" | tr '\n' ' ') "
	kill -KILL -- "-$group" 2>/dev/null
	for _ in $(seq 1 40); do # 2 s at most
		targets=() found="" waiting=""
		for ns in $(ip netns list 2>/dev/null | awk '$1 ~ /^tfo-/ {print $1}'); do
			[ -n "${before[$ns]:-}" ] && continue
			pid=${ns#tfo-}
			pid=${pid%%-*}
			state=""
			read -r line 2>/dev/null <"/proc/$pid/stat" && { line=${line##*) } && state=${line%% *}; }
			case "$state" in
			"" | Z | X | x) targets+=("/run/netns/$ns") ;;
			*) case "$members" in *" $pid "*) waiting=1 ;; esac ;; # ours, still dying
			esac
		done
		if [ "${#targets[@]}" -gt 0 ]; then
			for p in $(pids_in "${targets[@]}"); do
				kill -KILL "$p" 2>/dev/null && found=1
			done
		fi
		[ -z "$found$waiting" ] && break
		sleep 0.05
	done
	rm -rf -- "$bin"
}
# pids_in NSFILE...: the processes in those network namespaces, in one pass
# over /proc (`ip netns pids` scans it once per namespace).
# shellcheck disable=SC2317 # run through declare -f in the guard's own bash
pids_in() {
	local want
	want=$(stat -L -c 'net:[%i]' -- "$@" 2>/dev/null)
	find /proc/[0-9]*/ns/net -maxdepth 0 -printf '%h %l\n' 2>/dev/null |
		awk -v want="$want" 'BEGIN { n = split(want, w, "\n"); for (i = 1; i <= n; i++) ours[w[i]] = 1 }
			($2 in ours) { split($1, f, "/"); print f[3] }'
}

# Ginkgo in a process group of its own, so one signal reaches the CLI and
# every worker, and a Ctrl-C at a terminal reaches only make and this
# script; the workers handle SIGTERM like SIGINT (cleanups run). The CLI
# dies with this script (--pdeathsig KILL) and each worker with the CLI:
# pdeathsig_test.go sets PR_SET_PDEATHSIG in the worker when its parent's
# PID is TFOLAB_PDEATHSIG_PARENT.
set -m
(
	export TFOLAB_PDEATHSIG_PARENT=$BASHPID
	exec setpriv --pdeathsig KILL -- "$bin/ginkgo" "${flags[@]}" .
) &
ginkgo=$!
# The guard: in a process group of its own (the run's group SIGKILL does
# not reach it), sent SIGUSR1 when this script dies (guard, above). It
# writes nothing, and holds no pipe a CI runner reads our output from.
setpriv --pdeathsig USR1 -- bash -c "$(declare -f guard guard_fire pids_in); guard \"\$@\"" \
	tfolab-suite-guard "$$" "$ginkgo" "$bin" </dev/null >/dev/null 2>&1 &
guard=$!
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
end_guard
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
