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
#   KERNEL=debian:6.12     run it inside that kernel in a QEMU VM (a vmlinuz path,
#                          debian:MAJOR.MINOR, or host: no VM)
#   KERNELS="debian:6.1 debian:6.12 host"
#                          one report per kernel under $OUT/report/<kernel>/, then
#                          $OUT/report/matrix.md and matrix.json, and each kernel
#                          diffed against the first: exit 1 on a regression
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
KERNEL=${KERNEL:-}
KERNELS=${KERNELS:-}

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
[ -n "$KERNEL" ] && [ -n "$KERNELS" ] && die "KERNEL=$KERNEL and KERNELS=$KERNELS: give one or the other"
# slug names a kernel's folder as tfolab does (kernelvm.Slug).
slug() {
	case $1 in
	host) echo host ;;
	debian:*) echo "debian-${1#debian:}" ;;
	*) basename -- "$1" | sed 's/[^A-Za-z0-9._+-]\{1,\}/_/g' ;;
	esac
}
for k in $KERNEL $KERNELS; do
	case $k in
	host) ;;
	debian:*) [[ "$k" =~ ^debian:[0-9]+\.[0-9]+$ ]] || die "kernel $k: want debian:MAJOR.MINOR (debian:6.1, debian:6.12)" ;;
	*) [ -f "$k" ] || die "kernel $k: no such file (want a vmlinuz path, debian:6.1, debian:6.12 or host)" ;;
	esac
done
mkdir -p "$OUT" || die "OUT=$OUT: cannot create the folder"
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
"$GO" build -o "$bin/tfolab" ./cmd/tfolab || exit 1

# run_report ARGS...: tfolab report in the background, a signal passed on
# (a VM is stopped, every lab torn down) and waited for.
pid=
stopped=
trap '[ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null; stopped=1' TERM
trap '[ -n "$pid" ] && kill -INT "$pid" 2>/dev/null; stopped=1' INT
run_report() {
	"$bin/tfolab" report "$@" &
	pid=$!
	wait "$pid"
	local rc=$?
	# A signal interrupts the first wait; wait again for the teardown.
	if kill -0 "$pid" 2>/dev/null; then wait "$pid"; rc=$?; fi
	pid=
	return "$rc"
}

if [ -z "$KERNELS" ]; then
	[ -n "$KERNEL" ] && args+=(--kernel "$KERNEL")
	run_report "${args[@]}" --out "$OUT/report"
	exit $?
fi

# The matrix: one report per kernel, then matrix.md/json and the diffs
# against the first kernel.
worst=0
reports=()
names=()
for k in $KERNELS; do
	dir="$OUT/report/$(slug "$k")"
	echo "report: kernel $k -> $dir"
	run_report "${args[@]}" --kernel "$k" --out "$dir"
	rc=$?
	[ -n "$stopped" ] && exit "$rc"
	# With a baseline profile, the kernel's column is the candidate's.
	json="$dir/report.json"
	[ -n "$BASELINE" ] && json="$dir/candidate/report.json"
	if [ -f "$json" ]; then
		reports+=("$json")
		names+=("$(slug "$k")")
	fi
	[ "$rc" -gt "$worst" ] && worst=$rc
done
[ ${#reports[@]} -gt 0 ] || exit "$worst"
"$bin/tfolab" matrix --out "$OUT/report" "${reports[@]}" || worst=1
for i in "${!reports[@]}"; do
	[ "$i" = 0 ] && continue
	"$bin/tfolab" diff "${reports[0]}" "${reports[$i]}" --out "$OUT/report/diff-${names[0]}-to-${names[$i]}.md"
	rc=$?
	[ "$rc" -gt "$worst" ] && worst=$rc
done
exit "$worst"
