#!/usr/bin/env bash
# Proves that a run killed with SIGKILL leaves nothing behind once
# `make clean` has run: no lab namespace (and so no link, route, rule or
# process of the lab), and a root namespace byte-for-byte as before.
#
# It starts the baseline suite in its own process group, waits until lab
# namespaces exist, SIGKILLs the whole group (nothing gets to run a
# cleanup), then runs `make clean` while the killed test process is still a
# zombie: its parent is a small perl holder that does not reap it until the
# script says so, as on hosts whose PID 1 never reaps. kill(pid, 0) succeeds
# on a zombie, so a sweeper that trusted it would keep the namespaces.
set -euo pipefail
cd "$(dirname "$0")/.."

GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
export GOFLAGS=${GOFLAGS:--buildvcs=false} GOTOOLCHAIN=${GOTOOLCHAIN:-local}
command -v perl >/dev/null || { echo "check-killed-run: FAIL: needs perl (the non-reaping parent)" >&2; exit 1; }
work=$(mktemp -d)
holder=
release() {
	# Closing the fifo lets the holder reap the runner (and any orphan of
	# it) and exit.
	if [ -n "$holder" ]; then
		exec 7>&- || true
		wait "$holder" || echo "check-killed-run: the holder reported processes it could not reap" >&2
		holder=
	fi
}
cleanup() {
	if [ -s "$work/runner.pid" ]; then
		kill -KILL -- "-$(cat "$work/runner.pid")" 2>/dev/null || true
	fi
	release
	rm -rf "$work"
}
trap cleanup EXIT

"$GO" build -o "$work/tfolab" ./cmd/tfolab
"$GO" tool ginkgo build -o "$work/" . >/dev/null
"$work/tfolab" host-state >"$work/before"

lab_namespaces() { ip netns list 2>/dev/null | awk '{print $1}' | grep '^tfo-' || true; }
proc_state() { awk '{sub(/.*\) /, ""); print $1}' "/proc/$1/stat" 2>/dev/null || echo gone; }

# hold DIR ARGS...: runs ARGS in DIR as the child of a perl process that writes its PID to runner.pid and does
# not wait for it until fd 7 of this script is closed. The holder is a
# child subreaper, so orphans of the runner come to it, not to PID 1; it
# reaps them too, giving up (and failing) after 10 s.
hold() {
	rm -f "$work/hold" "$work/runner.pid"
	mkfifo "$work/hold"
	perl -e '
		require "syscall.ph";
		syscall(&SYS_prctl, 36, 1, 0, 0, 0) == 0 or die "prctl(PR_SET_CHILD_SUBREAPER): $!\n";
		my ($fifo, $pidfile, $log, $dir, @cmd) = @ARGV;
		my $pid = fork() // die "fork: $!\n";
		if ($pid == 0) {
			chdir($dir) or die "chdir $dir: $!\n";
			open(STDOUT, ">", $log) or die "$log: $!\n";
			open(STDERR, ">&", \*STDOUT) or die "dup: $!\n";
			exec(@cmd) or die "exec $cmd[0]: $!\n";
		}
		open(my $p, ">", "$pidfile.tmp") or die "$pidfile: $!\n";
		print $p "$pid\n";
		close($p);
		rename("$pidfile.tmp", $pidfile) or die "$pidfile: $!\n";
		open(my $h, "<", $fifo) or die "$fifo: $!\n";
		my $line = <$h>; # end of file: the script let go
		use POSIX ":sys_wait_h";
		for (my $i = 0; $i < 200; $i++) {
			my $r = waitpid(-1, WNOHANG);
			exit 0 if $r == -1; # no child left
			select(undef, undef, undef, 0.05) if $r == 0;
		}
		print STDERR "holder: children still running after 10 s\n";
		exit 1;
	' "$work/hold" "$work/runner.pid" "$work/run.log" "$@" &
	holder=$!
	exec 7<>"$work/hold"
	for _ in $(seq 1 100); do
		[ -s "$work/runner.pid" ] && return 0
		sleep 0.05
	done
	echo "check-killed-run: FAIL: the holder did not start the runner" >&2
	exit 1
}

leftovers=0
for attempt in 1 2 3; do
	# setsid: the runner leads a process group of its own, so one kill
	# reaches it and everything it started.
	hold "$work" setsid ./tfolab.test -ginkgo.label-filter=baseline
	runner=$(cat "$work/runner.pid")
	# Bounded wait for the first lab namespace (the suite builds one within
	# milliseconds of starting).
	for _ in $(seq 1 200); do
		[ -n "$(lab_namespaces)" ] && break
		sleep 0.05
	done
	kill -KILL -- "-$runner" 2>/dev/null || kill -KILL "$runner" 2>/dev/null || true
	for _ in $(seq 1 100); do
		[ "$(proc_state "$runner")" = Z ] && break
		sleep 0.05
	done
	leftovers=$(lab_namespaces | wc -l)
	[ "$leftovers" -gt 0 ] && break
	echo "attempt $attempt: the kill landed between two labs; trying again"
	release
done
if [ "$leftovers" -eq 0 ]; then
	echo "check-killed-run: FAIL: could not catch the suite with a lab alive" >&2
	exit 1
fi
if [ "$(proc_state "$runner")" != Z ]; then
	echo "check-killed-run: FAIL: runner $runner is $(proc_state "$runner"), want a zombie" >&2
	exit 1
fi
echo "check-killed-run: SIGKILL left $leftovers lab namespace(s), runner $runner is a zombie:"
lab_namespaces | sed 's/^/  /'

if ! make --no-print-directory clean GO="$GO" OUT="$work/out" 7>&-; then
	echo "check-killed-run: FAIL: make clean failed while the killed run was a zombie" >&2
	exit 1
fi

if [ "$(proc_state "$runner")" != Z ]; then
	echo "check-killed-run: FAIL: runner $runner was $(proc_state "$runner") by the end of make clean; the check needs it a zombie throughout" >&2
	exit 1
fi
release
remaining=$(lab_namespaces)
if [ -n "$remaining" ]; then
	echo "check-killed-run: FAIL: namespaces still present after make clean:" >&2
	echo "$remaining" >&2
	exit 1
fi
"$work/tfolab" host-state >"$work/after"
if ! diff -u "$work/before" "$work/after"; then
	echo "check-killed-run: FAIL: the root namespace changed" >&2
	exit 1
fi
echo "check-killed-run: ok: make clean removed every namespace while the killed run was a zombie; root namespace unchanged"
