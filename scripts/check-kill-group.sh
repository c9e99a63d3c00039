#!/usr/bin/env bash
# Proves that SIGKILL to the process group of a running `make test` (what
# GitLab Runner and `timeout -s KILL` send) ends every process of the run
# within a second, and that `make clean` then removes what is left (the
# lab namespaces): exit 0, no namespace of the run remains.
#
# It starts `make test` the way a CI runner does, leading a session and a
# process group of its own (setsid), waits until the Ginkgo workers have
# labs (and a few seconds more for a real peer, nginx or HAProxy, to run in
# one), sends SIGKILL to the whole group (`kill -KILL -- -PGID`), then
# looks every 0.1 s for a living process of the run, that is any process
#   - in the run's session (a process group of its own does not leave it),
#   - with the run's marker in its environment,
#   - inside a lab namespace of the run (`ip netns pids`; a namespace is the
#     run's when the PID in its name is one of the run's processes),
#   - running the suite's compiled test binary (CHECKOUT/*.test), or with
#     its cwd or command line in this checkout, started since the run began.
# Zombies are dead: they only wait for their new parent to reap them.
#
#   bash scripts/check-kill-group.sh
#   LABELS='peers || blackhole' TARGET=test PROCS=16 bash scripts/check-kill-group.sh
#
# TARGET=suite skips deps, preflight and the unit tests (a quicker check).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
repo=$(pwd -P)
export GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
export GOFLAGS=${GOFLAGS:--buildvcs=false} GOTOOLCHAIN=${GOTOOLCHAIN:-local}
LABELS=${LABELS:-peers || blackhole}
TARGET=${TARGET:-test}
LIMIT=${LIMIT:-1.0}      # seconds from the SIGKILL to the last process gone
PEER_WAIT=${PEER_WAIT:-20} # seconds to wait for nginx or HAProxy once labs exist
START_WAIT=${START_WAIT:-900}

fail() { echo "check-kill-group: FAIL: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || fail "needs root (the suite builds network namespaces)"
command -v ip >/dev/null || fail "needs ip (iproute2)"

work=$(mktemp -d)
touch "$work/start"
t0ticks=999999999999 # the run's start (set below): nothing is "since" before it
token=$$-$RANDOM$RANDOM
leader=
cleanup() {
	# Whatever the check left running is the run's: end it by PID.
	if [ -n "$leader" ]; then
		kill -KILL -- "-$leader" 2>/dev/null
		local p
		for p in $(run_procs | awk '{print $1}' | sort -u); do kill -KILL "$p" 2>/dev/null; done
	fi
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
mysid=$(ps -o sid= -p $$ | tr -d ' ')

# snapshot: state, session and start time (clock ticks since boot) of
# every process, read with builtins only (no fork per process).
declare -A st=() sd=() stt=()
snapshot() {
	st=() sd=() stt=()
	local f p line a
	for f in /proc/[0-9]*/stat; do
		read -r line 2>/dev/null <"$f" || continue
		p=${f#/proc/}
		p=${p%/stat}
		read -r -a a <<<"${line##*) }"
		st[$p]=${a[0]} sd[$p]=${a[3]} stt[$p]=${a[19]}
	done
}
alive() { case "${st[$1]:-X}" in Z | X | x) return 1 ;; esac; }

# The run's PIDs, remembered while it runs: they name its namespaces.
declare -A seen=()
remember() {
	local p
	for p in "${!sd[@]}"; do
		[ "${sd[$p]}" = "$leader" ] && seen[$p]=1
	done
}
# run_namespaces: the lab namespaces whose owner (the PID in the name) was
# one of the run's processes.
run_namespaces() {
	local ns pid
	for ns in $(ip netns list 2>/dev/null | awk '$1 ~ /^tfo-/ {print $1}'); do
		pid=${ns#tfo-}
		pid=${pid%%-*}
		[ -n "${seen[$pid]:-}" ] && echo "$ns"
	done
}
pcomm() { local c; read -r c 2>/dev/null <"/proc/$1/comm" && echo "$c"; }

# run_procs: "PID why" for every living process of the run (see above).
run_procs() {
	snapshot
	local p ns
	for p in "${!sd[@]}"; do
		[ "${sd[$p]}" = "$leader" ] && alive "$p" && echo "$p session"
	done
	for p in $(grep -lzsx -- "TFOLAB_KILLCHECK=$token" /proc/[0-9]*/environ | cut -d/ -f3); do
		alive "$p" && echo "$p environment"
	done
	local files=()
	for ns in $(run_namespaces); do files+=("/run/netns/$ns"); done
	if [ "${#files[@]}" -gt 0 ]; then
		# `ip netns pids`, for every namespace in one pass over /proc
		while read -r p ns; do
			alive "$p" && echo "$p in-namespace:$ns"
		done < <(find /proc/[0-9]*/ns/net -maxdepth 0 -printf '%h %l\n' 2>/dev/null |
			awk -v want="$(stat -L -c '%i %n' -- "${files[@]}" 2>/dev/null)" '
				BEGIN { n = split(want, w, "\n"); for (i = 1; i <= n; i++) { split(w[i], f, " "); ns["net:[" f[1] "]"] = f[2] } }
				($2 in ns) { split($1, f, "/"); sub(".*/", "", ns[$2]); print f[3], ns[$2] }')
	fi
	for p in $(find /proc/[0-9]*/exe -maxdepth 0 -lname "$repo/*.test*" 2>/dev/null | cut -d/ -f3); do
		alive "$p" && echo "$p test-binary"
	done
	for p in $({ find /proc/[0-9]*/cwd -maxdepth 0 \( -lname "$repo" -o -lname "$repo/*" \) 2>/dev/null
		grep -laFs -- "$repo" /proc/[0-9]*/cmdline; } | cut -d/ -f3 | sort -u); do
		alive "$p" || continue
		[ "${sd[$p]:-}" = "$mysid" ] && continue # this script's own helpers
		[ "${stt[$p]:-0}" -ge "$t0ticks" ] && echo "$p checkout"
	done
}
describe() { # PID: one line, or "(gone)"
	ps -o pid=,ppid=,pgid=,sid=,stat=,args= -p "$1" 2>/dev/null | cut -c1-200 | grep . || echo "$1 (gone)"
}

# Start the run as a CI runner does: a session and process group of its own.
# A background job starts with SIGINT ignored; nothing here relies on it.
TFOLAB_KILLCHECK=$token setsid make --no-print-directory "$TARGET" LABELS="$LABELS" OUT="$work/out" \
	${PROCS:+PROCS="$PROCS"} >"$work/run.log" 2>&1 &
leader=$!
disown "$leader" # its SIGKILL is the point: no "Killed" notice from this shell
for _ in $(seq 1 100); do
	[ "$(ps -o sid= -p "$leader" | tr -d ' ')" = "$leader" ] && break
	sleep 0.01
done
[ "$(ps -o sid=,pgid= -p "$leader" | tr -s ' ' | sed 's/^ //')" = "$leader $leader" ] ||
	fail "make (pid $leader) does not lead its own session and process group"
snapshot
t0ticks=${stt[$leader]}
echo "check-kill-group: make $TARGET LABELS='$LABELS' started as session and group $leader; waiting for the Ginkgo workers' labs"

# Wait until a Ginkgo worker (a process of the run with --ginkgo.parallel
# in its command line) owns a lab namespace.
started=$EPOCHREALTIME
worker_labs=""
while :; do
	snapshot
	alive "$leader" || { tail -n 20 "$work/run.log" >&2; leader=; fail "the run ended before a Ginkgo worker built a lab"; }
	remember
	for ns in $(run_namespaces); do
		pid=${ns#tfo-}
		pid=${pid%%-*}
		grep -qaF -- '--ginkgo.parallel.process' "/proc/$pid/cmdline" 2>/dev/null && worker_labs+=" $ns"
	done
	[ -n "$worker_labs" ] && break
	[ "$(echo "$EPOCHREALTIME - $started > $START_WAIT" | bc)" = 1 ] && fail "no Ginkgo worker built a lab within $START_WAIT s"
	sleep 0.2
done
echo "check-kill-group: Ginkgo workers have labs after $(printf '%.1f' "$(echo "$EPOCHREALTIME - $started" | bc)") s; waiting up to $PEER_WAIT s for nginx or HAProxy"
peer_deadline=$(echo "$EPOCHREALTIME + $PEER_WAIT" | bc)
peers=""
while [ "$(echo "$EPOCHREALTIME < $peer_deadline" | bc)" = 1 ]; do
	snapshot
	alive "$leader" || break
	remember
	peers=""
	for p in "${!sd[@]}"; do
		[ "${sd[$p]}" = "$leader" ] || continue
		case "$(pcomm "$p")" in nginx | haproxy) peers+=" $p" ;; esac
	done
	[ -n "$peers" ] && break
	sleep 0.2
done
alive "$leader" || { tail -n 20 "$work/run.log" >&2; leader=; fail "the run ended before the kill"; }

before=$(run_procs | sort -n -u -k1,1)
remember
kinds=$(for p in $(awk '{print $1}' <<<"$before"); do pcomm "$p"; done | sort | uniq -c | awk '{printf "%s %s, ", $1, $2}')
echo "check-kill-group: $(wc -l <<<"$before") processes of the run alive (${kinds%, }); peers:${peers:- none}"
for p in $peers; do
	echo "  peer $(describe "$p")"
	for c in $(pgrep -P "$p"); do echo "    child $(describe "$c")"; done
done

t_kill=$EPOCHREALTIME
kill -KILL -- "-$leader"
gone=""
at_limit=""
since="" # when the last scan that still found a process began
while :; do
	scan_start=$EPOCHREALTIME
	left=$(run_procs | sort -n -u -k1,1)
	took=$(echo "$EPOCHREALTIME - $t_kill" | bc)
	if [ -z "$left" ]; then
		gone=$took # an upper bound: every process was gone by the end of this scan
		scan=$(echo "$EPOCHREALTIME - $scan_start" | bc)
		break
	fi
	since=$(echo "$scan_start - $t_kill" | bc)
	if [ -z "$at_limit" ] && [ "$(echo "$took > $LIMIT" | bc)" = 1 ]; then
		at_limit=$left
		echo "check-kill-group: still alive $LIMIT s after the SIGKILL:" >&2
		while read -r p why; do echo "  $why: $(describe "$p")" >&2; done <<<"$left"
	fi
	[ "$(echo "$took > 10" | bc)" = 1 ] && break
	sleep 0.1
done
failures=0
if [ -z "$gone" ]; then
	echo "check-kill-group: FAIL: processes of the run still alive 10 s after the SIGKILL (killing them now):" >&2
	while read -r p why; do echo "  $why: $(describe "$p")" >&2; kill -KILL "$p" 2>/dev/null; done <<<"$left"
	failures=$((failures + 1))
elif [ -n "$at_limit" ]; then
	echo "check-kill-group: FAIL: the last process of the run was gone only $(printf '%.2f' "$gone") s after the SIGKILL (limit $LIMIT s)" >&2
	failures=$((failures + 1))
else
	echo "check-kill-group: ok: every process of the run gone $(printf '%.2f' "$gone") s after the SIGKILL (the last scan that found one began at $(printf '%.2f' "${since:-0}") s; a scan takes $(printf '%.2f' "$scan") s)"
fi
leader_was=$leader
leader= # nothing of the run to kill any more

namespaces=$(run_namespaces | wc -l)
echo "check-kill-group: $namespaces lab namespace(s) of the run left for make clean"
if ! make --no-print-directory clean OUT="$work/out" >"$work/clean.log" 2>&1; then
	echo "check-kill-group: FAIL: make clean failed:" >&2
	tail -n 20 "$work/clean.log" >&2
	failures=$((failures + 1))
fi
left_ns=$(run_namespaces)
if [ -n "$left_ns" ]; then
	echo "check-kill-group: FAIL: lab namespaces of the run left after make clean: $left_ns" >&2
	failures=$((failures + 1))
fi
others=$(ip netns list 2>/dev/null | awk '$1 ~ /^tfo-/' | wc -l)
[ "$others" -gt 0 ] && echo "check-kill-group: note: $others tfo-* namespace(s) of other runs on this host (their owners are alive)"
if [ -e "$repo/$(basename "$repo").test" ] && [ "$repo/$(basename "$repo").test" -nt "$work/start" ]; then
	echo "check-kill-group: note: the killed run left its compiled suite $repo/$(basename "$repo").test"
fi
[ "$failures" -eq 0 ] || { echo "check-kill-group: $failures failure(s) (run of session $leader_was); last lines of the run:" >&2; tail -n 5 "$work/run.log" >&2; exit 1; }
echo "check-kill-group: ok: SIGKILL to the group of make $TARGET ended the run in $(printf '%.2f' "$gone") s; make clean exit 0, no namespace of the run left"
