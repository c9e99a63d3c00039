#!/usr/bin/env bash
# Proves that SIGTERM or SIGINT sent to the top process only (as docker
# stop, systemd and CI cancels do) stops a running suite within seconds:
# every Ginkgo process ends, their cleanups run, and no lab namespace or
# process of the run is left.
set -uo pipefail
cd "$(dirname "$0")/.."
export GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
export GOFLAGS=${GOFLAGS:--buildvcs=false} GOTOOLCHAIN=${GOTOOLCHAIN:-local}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

lab_namespaces() { ip netns list 2>/dev/null | awk '{print $1}' | grep '^tfo-' | sort || true; }
# owned_by "PID ...": the lab namespaces those processes created (the PID is
# in the name); other runs on the host (CI neighbours) are not this run's.
owned_by() {
	local ns pid
	for ns in $(lab_namespaces); do
		pid=${ns#tfo-}
		pid=${pid%%-*}
		case " $1 " in *" $pid "*) echo "$ns" ;; esac
	done
}
# ours TOP: the lab namespaces of the processes in TOP's session.
ours() { owned_by "$(pgrep -s "$1" | tr '\n' ' ')"; }
"$GO" tool ginkgo build -o "$work/" . >/dev/null || exit 1 # compile once, outside the timed part

failures=0
for sig in TERM INT; do
	# A background job of a script starts with SIGINT ignored; a make run
	# from a terminal or by sudo has it, so restore it before exec.
	setsid /usr/bin/python3 -c 'import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execvp(sys.argv[1], sys.argv[1:])' \
		make --no-print-directory -s suite LABELS=blackhole PROCS=4 OUT="$work/out" >"$work/$sig.log" 2>&1 &
	top=$!
	# Bounded wait until the run has a lab of its own (the blackhole specs
	# run for seconds, so one is alive when the signal comes).
	started=""
	for _ in $(seq 1 600); do
		[ -n "$(ours "$top")" ] && { started=1; break; }
		sleep 0.1
	done
	if [ -z "$started" ]; then
		echo "check-signals: FAIL: SIG$sig: the suite built no lab within 60 s" >&2
		kill -KILL -- "-$top" 2>/dev/null
		failures=$((failures + 1))
		continue
	fi
	pids=$(pgrep -s "$top" | tr '\n' ' ') # the run's processes, to know its namespaces later
	t0=$(date +%s.%N)
	kill -"$sig" "$top"
	stopped=""
	for _ in $(seq 1 300); do # 30 s
		kill -0 "$top" 2>/dev/null || { stopped=1; break; }
		sleep 0.1
	done
	took=$(echo "$(date +%s.%N) - $t0" | bc)
	if [ -z "$stopped" ]; then
		echo "check-signals: FAIL: SIG$sig to make (pid $top) did not stop the suite within 30 s" >&2
		kill -KILL -- "-$top" 2>/dev/null
		failures=$((failures + 1))
		continue
	fi
	wait "$top" 2>/dev/null
	sleep 1 # let the last exits be reaped
	left=$(owned_by "$pids")
	# Living processes of the run's session (zombies wait for PID 1 to reap them).
	procs=$(pgrep -s "$top" 2>/dev/null | while read -r p; do ps -o pid=,stat=,args= -p "$p"; done | awk '$2 !~ /^Z/' | tr '\n' ';')
	if [ -n "$left" ] || [ -n "$procs" ]; then
		echo "check-signals: FAIL: SIG$sig: left namespaces [$left] processes [$procs]" >&2
		failures=$((failures + 1))
		continue
	fi
	echo "check-signals: ok: SIG$sig to make alone stopped the suite in ${took%???????} s, nothing left"
done
[ "$failures" -eq 0 ] || { echo "check-signals: $failures failure(s); logs:" >&2; for f in "$work"/*.log; do tail -n 5 "$f" >&2; done; exit 1; }
