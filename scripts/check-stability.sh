#!/usr/bin/env bash
# check-stability.sh N [--hogs K] [--report M]
#
# Is the verdict the same every time? Runs `make test` N times in a row,
# each in a fresh clone of this repository's HEAD (committed work only),
# optionally with K busy-loop CPU hogs running throughout (a noisy
# neighbour on the CI runner), then `make report` M times the same way.
# Prints one line per run (wall time and result), then how many runs
# passed and a table of failures per spec (per scenario for the reports),
# and diffs the first two reports (`tfolab diff`): an expectation that held
# in the first and failed in the second is a regression. Exit 0 only when
# every run passed and the diff found no regression; 130 when interrupted.
#
# The runs take their settings from the environment, as make does:
#   LABELS=baseline bash scripts/check-stability.sh 5 --hogs 2 --report 2
# Each run's log and junit.xml (report.json) are kept in
# $OUT/stability/<date>/ (OUT defaults to out). Clones and hogs are removed
# on every exit, Ctrl-C included (the hogs die with this script even when
# it is SIGKILLed).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
repo=$(pwd -P)
GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
export GOFLAGS=${GOFLAGS:--buildvcs=false} GOTOOLCHAIN=${GOTOOLCHAIN:-local}

usage() { echo "usage: check-stability.sh N [--hogs K] [--report M] (N make test runs, K CPU hogs, M make report runs)" >&2; exit 2; }
count() { [[ "$1" =~ ^[0-9]+$ ]] || usage; echo "$1"; }
[ $# -ge 1 ] || usage
runs=$(count "$1") || exit 2
shift
hogs=0 reports=0
while [ $# -gt 0 ]; do
	case "$1" in
	--hogs) [ $# -ge 2 ] || usage; hogs=$(count "$2") || exit 2; shift 2 ;;
	--report) [ $# -ge 2 ] || usage; reports=$(count "$2") || exit 2; shift 2 ;;
	*) usage ;;
	esac
done
[ $((runs + reports)) -gt 0 ] || usage
[ "$(id -u)" = 0 ] || { echo "check-stability: needs root (make test and make report build network namespaces)" >&2; exit 1; }
command -v python3 >/dev/null || { echo "check-stability: needs python3 (to read junit.xml and report.json)" >&2; exit 1; }

base=$(mkdir -p -- "${OUT:-out}/stability" && cd -- "${OUT:-out}/stability" && pwd -P) || exit 1
results=$base/$(date +%Y%m%d-%H%M%S)
mkdir -p -- "$results" || exit 1

hog_pids=() clone="" child="" interrupted=""
# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
	[ -n "$child" ] && stop_child
	[ "${#hog_pids[@]}" -gt 0 ] && kill "${hog_pids[@]}" 2>/dev/null
	remove_clone
}
trap cleanup EXIT
trap 'interrupted=1; [ -z "$child" ] || kill -TERM "$child" 2>/dev/null' INT TERM

# in_clone: the processes whose cwd is in the current clone.
in_clone() { find /proc/[0-9]*/cwd -maxdepth 0 \( -lname "$clone/*" -o -lname "$clone" \) 2>/dev/null | cut -d/ -f3; }
remove_clone() {
	[ -n "$clone" ] || return 0
	local p
	# make exits on SIGTERM without waiting for its recipe: the suite stops
	# its Ginkgo processes itself (give it 20 s); anything else of the run
	# (go test and its test binaries) gets SIGTERM, then SIGKILL.
	for _ in $(seq 1 200); do
		suite_running || break
		sleep 0.1
	done
	for sig in TERM TERM KILL; do
		[ -z "$(in_clone)" ] && break
		for p in $(in_clone); do kill -"$sig" "$p" 2>/dev/null; done
		sleep 1
	done
	# An interrupted run may leave lab namespaces (a killed unit test's).
	[ -z "$interrupted" ] || (cd "$clone" && env -u OUT make --no-print-directory -s clean >/dev/null 2>&1)
	rm -rf -- "$(dirname -- "$clone")"
	clone=""
}
suite_running() {
	local p
	for p in $(in_clone); do
		grep -qaF 'scripts/suite.sh' "/proc/$p/cmdline" 2>/dev/null && return 0
	done
	return 1
}
# shellcheck disable=SC2317 # run by the EXIT trap
stop_child() {
	kill -TERM "$child" 2>/dev/null
	while kill -0 "$child" 2>/dev/null; do wait "$child"; done
	child=""
}

new_clone() {
	local dir
	dir=$(mktemp -d "${TMPDIR:-/tmp}/tfolab-stability.XXXXXX") || return 1
	clone=$dir/tfolab
	git clone -q -- "$repo" "$clone"
}
# run_make TARGET LOG: make TARGET in the clone, in the background so that
# a signal to this script is handled at once. OUT is the clone's own.
run_make() {
	local rc
	(cd "$clone" && exec env -u OUT make --no-print-directory "$1") >"$2" 2>&1 &
	child=$!
	wait "$child"
	rc=$?
	while kill -0 "$child" 2>/dev/null; do # a trapped signal ended the wait, not make
		wait "$child"
		rc=$?
	done
	child=""
	return "$rc"
}
elapsed() { printf '%.1f' "$(echo "$EPOCHREALTIME - $1" | bc)"; }
# start_run KIND I N: begins run I of N of make KIND (test or report) on
# its line, starts its clock (t0) and makes its clone; false, and the run
# counted as failed, when git clone fails.
start_run() {
	local -n failed=$1_failed
	printf '%s run %d/%d: ' "$1" "$2" "$3"
	t0=$EPOCHREALTIME
	new_clone && return 0
	echo "git clone failed"
	failed=$((failed + 1))
	return 1
}
# finish_run KIND PASSED FAILED LOG: counts the run by its exit status (rc),
# ends its line with its wall time (took) and what it found (PASSED or
# FAILED, and the LOG to read), and removes its clone.
finish_run() {
	local -n passed=$1_passed failed=$1_failed
	if [ "$rc" = 0 ]; then
		passed=$((passed + 1))
		echo "pass in $took s ($2)"
	else
		failed=$((failed + 1))
		echo "FAIL (exit $rc) in $took s ($3; log: $4)"
	fi
	remove_clone
}

for _ in $(seq 1 "$hogs"); do
	setpriv --pdeathsig KILL -- sh -c 'while :; do :; done' &
	hog_pids+=($!)
done
echo "check-stability: HEAD $(git -C "$repo" log --oneline -1 | cut -c1-70)"
echo "check-stability: $runs make test, $reports make report${LABELS:+, LABELS=$LABELS}${PROCS:+, PROCS=$PROCS}, $hogs CPU hog(s) on $(nproc) CPUs; logs in $results"

# make test: failures per spec, from each run's junit.xml.
test_failed=0 test_passed=0
: >"$results/test-failures"
for i in $(seq 1 "$runs"); do
	[ -n "$interrupted" ] && break
	start_run test "$i" "$runs" || break
	run_make test "$results/test-$i.log"
	rc=$?
	took=$(elapsed "$t0")
	[ -n "$interrupted" ] && { echo "interrupted after $took s"; break; }
	summary=$(grep -E '^suite: [0-9]+ passed' "$results/test-$i.log" | tail -n 1)
	if [ -s "$clone/out/junit.xml" ]; then
		cp "$clone/out/junit.xml" "$results/junit-$i.xml"
		python3 - "$results/junit-$i.xml" >>"$results/test-failures" <<-'EOF'
			import sys, xml.etree.ElementTree as ET
			for tc in ET.parse(sys.argv[1]).iter("testcase"):
			    st = tc.get("status") or ("failed" if tc.find("failure") is not None or tc.find("error") is not None else "passed")
			    if st not in ("passed", "skipped", "pending"):
			        print(tc.get("name"))
		EOF
	elif [ "$rc" != 0 ]; then
		# No suite ran: the unit tests (or a step before them) failed.
		# go test's failing packages and top-level tests, without timings
		fails=$(grep -E $'^(FAIL\t|--- FAIL: )' "$results/test-$i.log" |
			sed -E $'s/^FAIL\t([^\t]*).*/\\1/; s/^--- FAIL: ([^ ]*).*/\\1/')
		if [ -n "$fails" ]; then
			printf '%s\n' "$fails" | sed 's/^/unit: /' >>"$results/test-failures"
		else
			echo "(before the suite) $(grep . "$results/test-$i.log" | tail -n 1)" >>"$results/test-failures"
		fi
	fi
	finish_run test "$summary" "${summary:-no suite summary}" "$results/test-$i.log"
done

# make report: failures per scenario, from each run's report.json.
report_failed=0 report_passed=0
: >"$results/report-failures"
for i in $(seq 1 "$reports"); do
	[ -n "$interrupted" ] && break
	start_run report "$i" "$reports" || break
	[ -x "$results/tfolab" ] || (cd "$clone" && "$GO" build -o "$results/tfolab" ./cmd/tfolab)
	run_make report "$results/report-$i.log"
	rc=$?
	took=$(elapsed "$t0")
	[ -n "$interrupted" ] && { echo "interrupted after $took s"; break; }
	what="no report.json"
	if [ -s "$clone/out/report/report.json" ]; then
		cp "$clone/out/report/report.json" "$results/report-$i.json"
		what=$(python3 - "$results/report-$i.json" 3>>"$results/report-failures" <<-'EOF'
			import json, os, sys
			r = json.load(open(sys.argv[1]))
			failed = [s["name"] for s in r.get("scenarios", []) if not s.get("pass")]
			with os.fdopen(3, "w") as out:
			    for name in failed:
			        print(name, file=out)
			print("%d scenarios, %d failed" % (len(r.get("scenarios", [])), len(failed)))
		EOF
		)
	elif [ "$rc" != 0 ]; then
		echo "(no report) $(grep . "$results/report-$i.log" | tail -n 1)" >>"$results/report-failures"
	fi
	finish_run report "$what" "$what" "$results/report-$i.log"
done
diff_rc="" diff_line=""
if [ -s "$results/report-1.json" ] && [ -s "$results/report-2.json" ]; then
	"$results/tfolab" diff "$results/report-1.json" "$results/report-2.json" --out "$results/report-diff.md" >"$results/report-diff.log" 2>&1
	diff_rc=$? # 0: no regression, 1: a regression, 2: a report it cannot read
	diff_line=$(grep -E '^diff: ' "$results/report-diff.log" | tail -n 1)
	[ -n "$diff_line" ] || diff_line=$(grep . "$results/report-diff.log" | tail -n 1)
fi

# table FILE: "count  name" per line, most frequent first.
table() { sort "$1" | uniq -c | sort -k1,1nr -k2 | sed 's/^ */  /'; }
echo
status=0
if [ "$runs" -gt 0 ]; then
	echo "check-stability: make test: $((test_passed + test_failed)) run(s): $test_passed passed, $test_failed failed"
	if [ -s "$results/test-failures" ]; then
		echo "failures per spec (runs that failed it):"
		table "$results/test-failures"
	fi
	[ "$test_failed" -eq 0 ] && [ "$test_passed" -eq "$runs" ] || status=1
fi
if [ "$reports" -gt 0 ]; then
	echo "check-stability: make report: $((report_passed + report_failed)) run(s): $report_passed passed, $report_failed failed"
	if [ -s "$results/report-failures" ]; then
		echo "failures per scenario (reports that failed it):"
		table "$results/report-failures"
	fi
	if [ -n "$diff_rc" ]; then
		echo "check-stability: report 1 vs report 2 (tfolab diff, exit $diff_rc): $diff_line"
		[ "$diff_rc" = 0 ] || status=1
	elif [ "$reports" -ge 2 ]; then
		echo "check-stability: report 1 vs report 2: not compared (a report is missing)"
		status=1
	fi
	[ "$report_failed" -eq 0 ] && [ "$report_passed" -eq "$reports" ] || status=1
fi
[ -n "$interrupted" ] && { echo "check-stability: interrupted" >&2; exit 130; }
exit "$status"
