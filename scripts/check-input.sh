#!/usr/bin/env bash
# Proves that bad input to `make test`/`make suite` is one clear line and a
# non-zero exit before any lab exists (for `make test`: within seconds, before
# the unit tests), that input with quotes and spaces passes intact, that a
# label filter selecting nothing fails, and that a root-less run says why in
# one line.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
export GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
export GOFLAGS=${GOFLAGS:--buildvcs=false} GOTOOLCHAIN=${GOTOOLCHAIN:-local}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failures=0

# expect NAME WANT_RC PATTERN MAX_LINES -- COMMAND...: runs COMMAND, checks
# its exit code (a number, or "nonzero": make exits 2 for any failed
# recipe), that its output has PATTERN, and that it is short.
expect() {
	local name=$1 want=$2 pattern=$3 maxlines=$4
	shift 5
	local out rc
	out=$("$@" 2>&1)
	rc=$?
	local lines
	lines=$(printf '%s\n' "$out" | grep -c .)
	local rcok=1
	case "$want" in
	nonzero) [ "$rc" != 0 ] || rcok=0 ;;
	*) [ "$rc" = "$want" ] || rcok=0 ;;
	esac
	if [ "$rcok" = 0 ] || ! grep -qE -- "$pattern" <<<"$out" || [ "$lines" -gt "$maxlines" ]; then
		echo "check-input: FAIL: $name: exit $rc (want $want), $lines lines (want ≤ $maxlines), want /$pattern/:"
		printf '%s\n' "$out" | sed 's/^/    /' | head -20
		failures=$((failures + 1))
		return
	fi
	echo "check-input: ok: $name: $(printf '%s\n' "$out" | grep -E -- "$pattern" | head -1)"
}

mk() { make --no-print-directory -s "$@"; }
expect "PROCS=abc" 2 'PROCS=abc: want a whole number' 3 -- mk suite PROCS=abc
expect "PROCS=0" 2 'PROCS=0: want a whole number' 3 -- mk suite PROCS=0
expect "RULES missing" 2 'RULES=/does/not/exist: no such file' 3 -- mk suite RULES=/does/not/exist
expect "RULES path with a space" 2 "RULES=$work/my rules.v4: no such file" 3 -- mk suite "RULES=$work/my rules.v4"
: >"$work/empty.rules"
expect "RULES empty" 2 'the file is empty' 3 -- mk suite "RULES=$work/empty.rules"
expect "LABELS syntax" 2 'is not a label filter' 3 -- mk suite 'LABELS=baseline &&'
expect "LABELS with a quote, matching nothing" nonzero 'no spec ran: the label filter matched none' 40 -- mk suite "LABELS=it's"
expect "LABELS matching nothing" nonzero 'no spec ran: the label filter matched none' 40 -- mk suite LABELS=nonexistent
# early NAME PATTERN MAKE-ARGS...: `make test MAKE-ARGS` fails within
# $EARLY_LIMIT s with exit 2, prints one line of its own (besides make's
# "make: *** ... Error 2") matching PATTERN, and runs no unit test.
EARLY_LIMIT=${EARLY_LIMIT:-5}
early() {
	local name=$1 pattern=$2
	shift 2
	local t0 out rc took ours
	t0=$EPOCHREALTIME
	out=$(make --no-print-directory -s test "$@" 2>&1)
	rc=$?
	took=$(echo "$EPOCHREALTIME - $t0" | bc)
	ours=$(printf '%s\n' "$out" | grep . | grep -v '^make: \*\*\*')
	if [ "$rc" != 2 ] || [ "$(grep -c . <<<"$ours")" != 1 ] || ! grep -qE -- "$pattern" <<<"$ours" ||
		grep -q 'unit: go test' <<<"$out" || [ "$(echo "$took > $EARLY_LIMIT" | bc)" = 1 ]; then
		echo "check-input: FAIL: make test $name: exit $rc (want 2) after $(printf '%.1f' "$took") s (want ≤ $EARLY_LIMIT s), want one line /$pattern/ and no unit test:"
		printf '%s\n' "$out" | sed 's/^/    /' | head -20
		failures=$((failures + 1))
		return
	fi
	echo "check-input: ok: make test $name: $(printf '%.1f' "$took") s, no unit test: $ours"
}
early "PROCS=abc" 'PROCS=abc: want a whole number' PROCS=abc
early "PROCS=0" 'PROCS=0: want a whole number' PROCS=0
early "RULES missing" 'RULES=/missing: no such file' RULES=/missing
early "RULES path with a space" "RULES=$work/my rules.v4: no such file" "RULES=$work/my rules.v4"
early "RULES empty" 'the file is empty' "RULES=$work/empty.rules"
early "LABELS syntax" 'is not a label filter' 'LABELS=baseline &&'
early "LABELS with an unbalanced quote" 'is not a label filter' "LABELS=(it's"
expect "not root" 1 'suite: needs root' 2 -- setpriv --reuid=65534 --regid=65534 --clear-groups bash scripts/suite.sh
expect "iptables off PATH (sudo's secure_path)" 0 'preflight: ok' 2 -- env PATH="$(dirname "$GO"):/usr/bin:/bin" make --no-print-directory -s preflight
expect "run without SCENARIO" 2 'SCENARIO=name' 2 -- mk run
expect "run of an unknown scenario" 2 'no scenario "baseline/nope"' 3 -- mk run SCENARIO=baseline/nope

if [ "$failures" -gt 0 ]; then
	echo "check-input: $failures check(s) failed" >&2
	exit 1
fi
echo "check-input: ok: bad input is one line and a non-zero exit, before any lab exists"
