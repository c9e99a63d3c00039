#!/usr/bin/env bash
# Runs `tfolab report` for `make report`: the whole catalogue under a sysctl
# profile, written to $OUT/report (report.md, report.json, junit.xml, and
# every scenario's observation and pcaps). Settings come from the
# environment, never through shell quoting:
#
#   PROFILE=f.conf         sysctl.d file (or directory) for every node; default: the embedded one
#   CLIENT_PROFILE=f.conf  for the client nodes; SERVER_PROFILE=f.conf for the service nodes
#   BASELINE=a.conf        run this profile first, then PROFILE, and diff: exit 1 on a regression
#   RTT=50ms               emulate a round trip on every router (0 or empty: none)
#   LABELS=expr            only scenarios matching a Ginkgo label filter
#   PARALLEL=14            scenarios at a time
#
# Bad input is one line and exit 2, before anything is built. SIGTERM or
# SIGINT reaches tfolab, which tears every lab down before it exits.
set -uo pipefail
cd "$(dirname "$0")/.."

GO=${GO:-go}
OUT=${OUT:-out}
PROFILE=${PROFILE:-}
CLIENT_PROFILE=${CLIENT_PROFILE:-}
SERVER_PROFILE=${SERVER_PROFILE:-}
BASELINE=${BASELINE:-}
RTT=${RTT:-}
LABELS=${LABELS:-}
PARALLEL=${PARALLEL:-}

die() { echo "report: $*" >&2; exit 2; }

[ "$(id -u)" = 0 ] || { echo "report: needs root (it builds network namespaces): run \`sudo make report\`" >&2; exit 1; }
args=()
for var in PROFILE CLIENT_PROFILE SERVER_PROFILE BASELINE; do
	path=${!var}
	[ -z "$path" ] && continue
	[ -e "$path" ] || [ "$path" = default ] || die "$var=$path: no such file or directory (or \"default\": the embedded profile)"
	case $var in
	PROFILE) args+=(--profile "$path") ;;
	CLIENT_PROFILE) args+=(--client-profile "$path") ;;
	SERVER_PROFILE) args+=(--server-profile "$path") ;;
	BASELINE) args+=(--baseline-profile "$path") ;;
	esac
done
[ -n "$RTT" ] && [ "$RTT" != 0 ] && args+=(--rtt "$RTT")
[ -n "$LABELS" ] && args+=(--labels "$LABELS")
if [ -n "$PARALLEL" ]; then
	[[ "$PARALLEL" =~ ^[1-9][0-9]*$ ]] || die "PARALLEL=$PARALLEL: want a whole number, 1 or more"
	args+=(--parallel "$PARALLEL")
fi
mkdir -p "$OUT" || die "OUT=$OUT: cannot create the folder"
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
"$GO" build -o "$bin/tfolab" ./cmd/tfolab || exit 1

"$bin/tfolab" report "${args[@]}" --out "$OUT/report" &
pid=$!
trap 'kill -TERM "$pid" 2>/dev/null' TERM
trap 'kill -INT "$pid" 2>/dev/null' INT
wait "$pid"
rc=$?
# A signal interrupts the first wait; wait again for the teardown.
if kill -0 "$pid" 2>/dev/null; then wait "$pid"; rc=$?; fi
exit "$rc"
