#!/usr/bin/env bash
# Runs the firewall check for `make check-firewall`: a TFO-safety verdict
# per family × client mode × phase for your own ruleset. Settings come from
# the environment (RULES, RULES6, NFT, PORT, PLACE, OUT, GO), never through
# shell quoting, so a path with a space passes intact:
#
#   sudo make check-firewall RULES=v4.rules RULES6=v6.rules NFT=ruleset.nft PORT=443 PLACE=router
#
# Exit 0 when every tested path is TFO-safe, 1 when any is not (or the
# check could not reach a verdict: not root, a lab that failed; the last
# line says which), 2 for bad input (one line naming the file and line,
# before any namespace exists). make reports any failed recipe as its own
# error 2, so a CI gate that must keep 1 and 2 apart either runs this
# script itself, with the same variables in its environment:
#
#   sudo env RULES=v4.rules RULES6=v6.rules bash scripts/check-firewall.sh; echo $?
#
# or reads $OUT/firewall/exit-code (0, 1, 2, or 128+N after signal N),
# which is written on every exit, after `make check-firewall`.
# SIGTERM or SIGINT reaches the check, which tears its labs down.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2

# As the Makefile does: run by hand under sudo, PATH may lack go and sbin.
GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
export GOFLAGS=${GOFLAGS:--buildvcs=false} GOTOOLCHAIN=${GOTOOLCHAIN:-local}
export PATH=$PATH:/usr/sbin:/sbin
OUT=${OUT:-out}
RULES=${RULES:-}
RULES6=${RULES6:-}
NFT=${NFT:-}
PORT=${PORT:-}
PLACE=${PLACE:-router}

bin=""
# finish: on every exit, the exit code in $OUT/firewall/exit-code and, but
# for bad input (its one line says it all), what the code means.
# shellcheck disable=SC2317 # run by the EXIT trap
finish() {
	local rc=$?
	local dir=$OUT/firewall
	mkdir -p -- "$dir" 2>/dev/null && echo "$rc" >"$dir/exit-code" 2>/dev/null
	case $rc in
	0) echo "check-firewall: exit 0: TFO-safe on every tested path ($dir/exit-code)" ;;
	1)
		if [ -n "$bin" ] && [ "$dir/firewall.json" -nt "$bin/started" ]; then
			echo "check-firewall: exit 1: not TFO-safe on every tested path, see $dir/firewall.md ($dir/exit-code)"
		else
			echo "check-firewall: exit 1: no verdict, the check failed before its report (see above; $dir/exit-code)"
		fi
		;;
	2) ;;
	*) echo "check-firewall: exit $rc: interrupted, no verdict ($dir/exit-code)" ;;
	esac
	[ -z "$bin" ] || rm -rf -- "$bin"
}
trap finish EXIT
rm -f -- "$OUT/firewall/exit-code"

die() { echo "check-firewall: $*" >&2; exit 2; }

[ -n "$RULES$RULES6$NFT" ] || die "give at least one ruleset: RULES=v4.rules (iptables-save), RULES6=v6.rules (ip6tables-save), NFT=ruleset.nft (nft list ruleset)"
[ "$(id -u)" = 0 ] || { echo "check-firewall: needs root (it builds network namespaces and applies your rules inside them): run \`sudo make check-firewall\`" >&2; exit 1; }

args=(firewall --place "$PLACE" --out "$OUT/firewall")
[ -n "$RULES" ] && args+=(--rules "$RULES")
[ -n "$RULES6" ] && args+=(--rules6 "$RULES6")
[ -n "$NFT" ] && args+=(--nft "$NFT")
[ -n "$PORT" ] && args+=(--port "$PORT")

bin=$(mktemp -d)
"$GO" build -o "$bin/tfolab" ./cmd/tfolab || exit 1
touch "$bin/started" # a report newer than this is this run's

"$bin/tfolab" "${args[@]}" &
check=$!
trap 'kill -TERM "$check" 2>/dev/null' TERM
trap 'kill -INT "$check" 2>/dev/null' INT
wait "$check"
rc=$?
# A signal interrupts the first wait; wait again for the check's own exit.
while kill -0 "$check" 2>/dev/null; do
	wait "$check"
	rc=$?
done
exit "$rc"
