package main

import (
	"fmt"

	"github.com/tfolab/tfolab/lab/tfo"
)

// `tfolab key` makes TFO keys for a fleet: the sysctl's own format, drawn
// from crypto/rand (lab/tfo.RandomKey), printed and nothing else. It never
// writes /etc or any sysctl: rolling a key out is the operator's step.
func init() {
	register("key", "key [--sysctl-d] [--backup OLD | --rotate OLD]", keyCommand)
}

const keyUsage = `usage: tfolab key [--sysctl-d] [--backup OLD | --rotate OLD]
  prints a fresh net.ipv4.tcp_fastopen_key value (crypto/rand), e.g. for every server of a pool
  --sysctl-d    print it as a sysctl.d line: net.ipv4.tcp_fastopen_key = ...
  --backup OLD  print "new,OLD": the new key issues cookies, OLD's are still accepted
  --rotate OLD  print the three values of a rolling rotation from OLD (docs/pools.md):
                1 "OLD,new" on every server, 2 "new,OLD" on every server, 3 "new"
OLD is the current value of net.ipv4.tcp_fastopen_key; with a backup key in it, its primary is used.`

func keyCommand(args []string) error {
	fs := newFlags("key")
	sysctlD := fs.Bool("sysctl-d", false, "print a sysctl.d line")
	backup := fs.String("backup", "", "the key being replaced")
	rotate := fs.String("rotate", "", "the key being replaced, for the three steps of a rotation")
	if err := fs.Parse(args); err != nil {
		return badInput("tfolab key: %v\n%s", err, keyUsage)
	}
	if fs.NArg() != 0 || (*backup != "" && *rotate != "") {
		return badInput("%s", keyUsage)
	}
	fresh, err := tfo.RandomKey()
	if err != nil {
		return fmt.Errorf("tfolab key: %w", err)
	}
	line := func(v string) string {
		if *sysctlD {
			return "net.ipv4.tcp_fastopen_key = " + v
		}
		return v
	}
	old := *backup + *rotate
	if old == "" {
		fmt.Println(line(fresh.String()))
		return nil
	}
	prev, err := tfo.ParseKey(old)
	if err != nil {
		return badInput("tfolab key: %v", err)
	}
	prev.Backup = nil
	if prev.Primary == fresh.Primary {
		return fmt.Errorf("tfolab key: the fresh key equals the old one: the random source is broken")
	}
	withBackup := func(primary, backup tfo.Key) string {
		b := backup.Primary
		primary.Backup = &b
		return primary.String()
	}
	if *backup != "" {
		fmt.Println(line(withBackup(fresh, prev)))
		return nil
	}
	steps := []struct{ value, when string }{
		{withBackup(prev, fresh), "on every server, then wait until all have it: the new key is accepted everywhere, not yet issued"},
		{withBackup(fresh, prev), "on every server, then wait until clients have reconnected: old cookies are accepted and replaced"},
		{fresh.String(), "on every server: a client that slept through step 2 fails once, then has the new cookie"},
	}
	for i, s := range steps {
		fmt.Printf("# step %d: %s\n%s\n", i+1, s.when, line(s.value))
	}
	return nil
}
