#!/usr/bin/env bash
# Runs the firewall check for `make check-firewall`: a TFO-safety verdict
# per family × client mode × phase for your own ruleset. Settings come from
# the environment (RULES, RULES6, NFT, PORT, PLACE, OUT, GO), never through
# shell quoting, so a path with a space passes intact:
#
#   sudo make check-firewall RULES=v4.rules RULES6=v6.rules NFT=ruleset.nft PORT=443 PLACE=router
#
# Exit 0 when every tested path is TFO-safe, 1 when any is not, 2 for bad
# input (one line naming the file and line, before any namespace exists).
# SIGTERM or SIGINT reaches the check, which tears its labs down.
set -uo pipefail
cd "$(dirname "$0")/.."

GO=${GO:-go}
OUT=${OUT:-out}
RULES=${RULES:-}
RULES6=${RULES6:-}
NFT=${NFT:-}
PORT=${PORT:-}
PLACE=${PLACE:-router}

die() { echo "check-firewall: $*" >&2; exit 2; }

[ -n "$RULES$RULES6$NFT" ] || die "give at least one ruleset: RULES=v4.rules (iptables-save), RULES6=v6.rules (ip6tables-save), NFT=ruleset.nft (nft list ruleset)"
[ "$(id -u)" = 0 ] || { echo "check-firewall: needs root (it builds network namespaces and applies your rules inside them): run \`sudo make check-firewall\`" >&2; exit 1; }

args=(firewall --place "$PLACE" --out "$OUT/firewall")
[ -n "$RULES" ] && args+=(--rules "$RULES")
[ -n "$RULES6" ] && args+=(--rules6 "$RULES6")
[ -n "$NFT" ] && args+=(--nft "$NFT")
[ -n "$PORT" ] && args+=(--port "$PORT")

bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
"$GO" build -o "$bin/tfolab" ./cmd/tfolab || exit 1

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
