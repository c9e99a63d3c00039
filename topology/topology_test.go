package topology

import (
	"context"
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/tfolab/tfolab/lab"
)

func TestValidate(t *testing.T) {
	for name, spec := range map[string]Spec{
		"no nodes":     {Name: "x"},
		"dup node":     {Name: "x", Nodes: []Node{{Role: "a"}, {Role: "a"}}},
		"unknown node": {Name: "x", Nodes: []Node{{Role: "a"}}, Links: []Link{{A: "a", B: "b"}}},
		"self link":    {Name: "x", Nodes: []Node{{Role: "a"}}, Links: []Link{{A: "a", B: "a"}}},
		"double link": {Name: "x", Nodes: []Node{{Role: "a"}, {Role: "b"}},
			Links: []Link{{A: "a", B: "b"}, {A: "b", B: "a"}}},
	} {
		if err := spec.Validate(); err == nil {
			t.Errorf("%s: Validate() = nil, want an error", name)
		}
	}
	for _, spec := range []Spec{Direct(), Routed()} {
		if err := spec.Validate(); err != nil {
			t.Errorf("%s: %v", spec.Name, err)
		}
	}
}

func TestAddressPlan(t *testing.T) {
	tp := &Topology{Spec: Routed()}
	a, b := tp.hostNumbers(Link{A: Client, B: Router})
	if a != 2 || b != 1 {
		t.Fatalf("client—router host numbers = %d,%d, want router .1 and client .2", a, b)
	}
	ep := endpoint(Client, Router, 1, 2)
	if ep.IPv4.String() != "10.34.1.2/24" || ep.IPv6.String() != "fd34:1::2/64" || ep.Ifname != "to-router" {
		t.Fatalf("endpoint = %+v", ep)
	}
}

func needRoot(tb testing.TB) {
	tb.Helper()
	if err := lab.Preflight(); err != nil {
		if os.Geteuid() != 0 {
			tb.Skipf("needs root: %v", err)
		}
		tb.Fatal(err)
	}
}

// BenchmarkRoutedSetupTeardown measures what every spec pays before its
// first packet: three namespaces, two veth pairs, addresses, routes,
// forwarding sysctls, link-up wait, and the teardown of all of it.
func BenchmarkRoutedSetupTeardown(b *testing.B) {
	needRoot(b)
	for b.Loop() {
		l := lab.New()
		if _, err := Build(context.Background(), l, Routed()); err != nil {
			l.Close()
			b.Fatal(err)
		}
		if err := l.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

func TestBuildRoutedLeavesNothing(t *testing.T) {
	needRoot(t)
	l := lab.New()
	tp, err := Build(context.Background(), l, Routed())
	if err != nil {
		l.Close()
		t.Fatal(err)
	}
	srv, _ := tp.Addr(Server, IPv6)
	if srv.String() != "fd34:2::2" {
		t.Errorf("server IPv6 = %s", srv)
	}
	out, err := tp.Namespace(Client).Run(context.Background(), "ping", "-c1", "-W1", "10.34.2.2")
	if err != nil && !strings.Contains(err.Error(), "executable file not found") {
		t.Errorf("ping across router: %v\n%s", err, out)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	names, _ := lab.ListNamespaces()
	for _, n := range names {
		if strings.Contains(n, l.ID) {
			t.Errorf("namespace %s left after Close", n)
		}
	}
}

func TestSolicitedNodeGroup(t *testing.T) {
	got := solicitedNodeHex(netip.MustParseAddr("fd34:2::2"))
	if got != "ff0200000000000000000001ff000002" {
		t.Fatalf("solicited-node group = %s", got)
	}
	joined := parseIGMP6([]byte("2    to-router       ff0200000000000000000001ff000002     1 00000004 0\n"))
	if !joined["to-router ff0200000000000000000001ff000002"] {
		t.Fatalf("parseIGMP6 = %v", joined)
	}
}
