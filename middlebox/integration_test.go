package middlebox

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/tfolab/tfolab/lab"
	"github.com/tfolab/tfolab/lab/labtest"
	"github.com/tfolab/tfolab/lab/rules"
	"github.com/tfolab/tfolab/topology"
	"golang.org/x/sys/unix"
)

const testPort = 7413

func save(t *testing.T, ctx context.Context, ns *lab.Namespace, f topology.Family) string {
	t.Helper()
	out, err := ns.Run(ctx, rules.Program(f)+"-save")
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// TestRouterDropSynData builds client—router—server, installs drop-syn-data
// in the router, sends one TFO SYN with data and checks that the rule
// counted it; then checks rollback and teardown through a second Lab.
func TestRouterDropSynData(t *testing.T) {
	labtest.NeedRoot(t, "creates network namespaces and runs iptables inside them")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	l := lab.New()
	defer func() {
		if err := l.Close(); err != nil {
			t.Errorf("lab close: %v", err)
		}
	}()
	topo, err := topology.Build(ctx, l, topology.Routed())
	if err != nil {
		t.Fatal(err)
	}
	router, client, server := topo.Namespace("router"), topo.Namespace("client"), topo.Namespace("server")

	m, _ := ByName("drop-syn-data")
	rs, err := m.Rules(topology.IPv4, Params{ServicePort: testPort})
	if err != nil {
		t.Fatal(err)
	}
	if err := rules.Apply(l, router, topology.IPv4, rs); err != nil {
		t.Fatal(err)
	}
	saved := save(t, ctx, router, topology.IPv4)
	if !strings.Contains(saved, rs[0].Tag()) || !strings.Contains(saved, "-m bpf --bytecode") {
		t.Fatalf("iptables-save in router lacks the rule:\n%s", saved)
	}

	if err := server.SetSysctl("net.ipv4.tcp_fastopen", "514"); err != nil {
		t.Fatal(err)
	}
	if err := client.SetSysctl("net.ipv4.tcp_fastopen", "5"); err != nil {
		t.Fatal(err)
	}
	srvAddr, err := topo.Addr("server", topology.IPv4)
	if err != nil {
		t.Fatal(err)
	}
	if srvAddr != netip.MustParseAddr("10.34.2.2") {
		t.Fatalf("server address %s, want 10.34.2.2", srvAddr)
	}
	t.Run("counts a SYN with data", func(t *testing.T) {
		sendSynData(t, ctx, topo, topology.IPv4)
		waitCounted(t, router, topology.IPv4, rs)
	})
	t.Run("counts a SYN with data over IPv6", func(t *testing.T) {
		rules6, err := m.Rules(topology.IPv6, Params{ServicePort: testPort})
		if err != nil {
			t.Fatal(err)
		}
		if err := rules.Apply(l, router, topology.IPv6, rules6); err != nil {
			t.Fatal(err)
		}
		sendSynData(t, ctx, topo, topology.IPv6)
		waitCounted(t, router, topology.IPv6, rules6)
	})

	t.Run("rollback", func(t *testing.T) {
		bad := []Rule{
			{Table: "filter", Chain: "FORWARD", Spec: []string{"-p", "tcp", "--dport", "9", "-j", "DROP"}},
			{Table: "filter", Chain: "FORWARD", Spec: []string{"-p", "tcp", "--dport", "9", "-j", "NOSUCHTARGET"}},
			{Table: "filter", Chain: "FORWARD", Spec: []string{"-p", "tcp", "--dport", "10", "-j", "DROP"}},
		}
		err := rules.Apply(l, router, topology.IPv4, bad)
		if err == nil {
			t.Fatal("Apply with an invalid rule succeeded")
		}
		if !strings.Contains(err.Error(), "rule 2") || !strings.Contains(err.Error(), "NOSUCHTARGET") {
			t.Errorf("error does not name the rule: %v", err)
		}
		t.Logf("error: %v", err)
		saved := save(t, ctx, router, topology.IPv4)
		for _, r := range bad {
			if strings.Contains(saved, r.Tag()) {
				t.Errorf("rule %s left behind:\n%s", r, saved)
			}
		}
		if !strings.Contains(saved, rs[0].Tag()) {
			t.Error("rollback removed an earlier Apply's rule")
		}
		if _, err := rules.Counters(router, topology.IPv4, bad[:1]); err == nil {
			t.Error("Counters found a rolled-back rule")
		}

		// A custom file: the error names the source line, and the chain
		// created before the failing rule is removed too.
		parsed, err := rules.ParseRulesFile(strings.NewReader("*filter\n:TFOBAD - [0:0]\n-A TFOBAD -j DROP\n-A FORWARD -j TFOBAD\n-A FORWARD -m nosuchmatch -j DROP\nCOMMIT\n"))
		if err != nil {
			t.Fatal(err)
		}
		err = rules.Apply(l, router, topology.IPv4, parsed)
		if err == nil || !strings.Contains(err.Error(), "line 5") {
			t.Fatalf("error %v, want it to name line 5", err)
		}
		t.Logf("error: %v", err)
		if saved := save(t, ctx, router, topology.IPv4); strings.Contains(saved, "TFOBAD") {
			t.Errorf("custom chain left behind:\n%s", saved)
		}
	})

	t.Run("teardown", func(t *testing.T) {
		custom, err := rules.ParseRulesFile(strings.NewReader(labtest.RulesFile))
		if err != nil {
			t.Fatal(err)
		}
		synack, _ := ByName("drop-tfo-synack")
		r4, err := synack.Rules(topology.IPv4, Params{ServicePort: 8080})
		if err != nil {
			t.Fatal(err)
		}
		bh, _ := ByName("blackhole-after-handshake")
		r6, err := bh.Rules(topology.IPv6, Params{ServicePort: 8080})
		if err != nil {
			t.Fatal(err)
		}
		l2 := lab.New()
		all4 := append(append([]Rule{}, custom...), r4...)
		if err := rules.Apply(l2, router, topology.IPv4, all4); err != nil {
			l2.Close()
			t.Fatal(err)
		}
		if err := rules.Apply(l2, router, topology.IPv6, r6); err != nil {
			l2.Close()
			t.Fatal(err)
		}
		s4, s6 := save(t, ctx, router, topology.IPv4), save(t, ctx, router, topology.IPv6)
		if !strings.Contains(s4, ":TFO - ") || !strings.Contains(s4, "TCPOPTSTRIP") || !strings.Contains(s6, "connmark") {
			t.Errorf("rs missing after Apply:\n%s\n%s", s4, s6)
		}
		c, err := rules.Counters(router, topology.IPv4, all4)
		if err != nil || len(c) != len(all4) {
			t.Errorf("Counters: %v %v", c, err)
		}
		if err := l2.Close(); err != nil {
			t.Fatalf("l2 close: %v", err)
		}
		s4, s6 = save(t, ctx, router, topology.IPv4), save(t, ctx, router, topology.IPv6)
		for _, r := range all4 {
			if !r.IsChain() && strings.Contains(s4, r.Tag()) {
				t.Errorf("IPv4 rule left after teardown: %s", r)
			}
		}
		for _, r := range r6 {
			if strings.Contains(s6, r.Tag()) {
				t.Errorf("IPv6 rule left after teardown: %s", r)
			}
		}
		// Only l's own drop-syn-data rule (one per family) may remain.
		if strings.Contains(s4, ":TFO ") || strings.Count(s4, rules.TagPrefix) != 1 || strings.Count(s6, rules.TagPrefix) != 1 {
			t.Errorf("leftovers after teardown:\n%s\n%s", s4, s6)
		}
		if !strings.Contains(s4, rs[0].Tag()) {
			t.Error("l2 teardown removed l's rule")
		}
	})
}

// sendSynData listens with TFO in the server ns and sends one non-blocking
// sendto(MSG_FASTOPEN) from the client ns (client sysctl 5: SYN carries the
// data without a cookie).
func sendSynData(t *testing.T, ctx context.Context, topo *topology.Topology, f topology.Family) {
	t.Helper()
	srvAddr, err := topo.Addr("server", f)
	if err != nil {
		t.Fatal(err)
	}
	network, domain := "tcp4", unix.AF_INET
	var sa unix.Sockaddr
	if f == topology.IPv6 {
		network, domain = "tcp6", unix.AF_INET6
		sa = &unix.SockaddrInet6{Port: testPort, Addr: srvAddr.As16()}
	} else {
		sa = &unix.SockaddrInet4{Port: testPort, Addr: srvAddr.As4()}
	}
	var ln net.Listener
	err = topo.Namespace("server").Do(func() error {
		lc := labtest.FastOpenListenConfig(16)
		var err error
		ln, err = lc.Listen(ctx, network, netip.AddrPortFrom(srvAddr, testPort).String())
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(io.Discard, c); c.Close() }()
		}
	}()

	fd := -1
	err = topo.Namespace("client").Do(func() error {
		var err error
		fd, err = unix.Socket(domain, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		err = unix.Sendto(fd, []byte("hello, tfo"), unix.MSG_FASTOPEN, sa)
		if err != nil && !errors.Is(err, unix.EINPROGRESS) {
			return err
		}
		return nil
	})
	if fd >= 0 {
		t.Cleanup(func() { unix.Close(fd) })
	}
	if err != nil {
		t.Fatal(err)
	}
}

// waitCounted waits up to 3 s for rs[0] to count a packet.
func waitCounted(t *testing.T, ns *lab.Namespace, f topology.Family, rs []Rule) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		c, err := rules.Counters(ns, f, rs)
		if err != nil {
			t.Fatal(err)
		}
		if c[0] >= 1 {
			t.Logf("%s: rule matched %d packet(s)", f, c[0])
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: rule counted %d packets after 3 s, want >= 1", f, c[0])
		}
		time.Sleep(20 * time.Millisecond)
	}
}
