package topology

import (
	"context"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tfolab/tfolab/lab"
	"github.com/vishvananda/netlink"
)

func TestValidate(t *testing.T) {
	for name, spec := range map[string]Spec{
		"no nodes":     {Name: "x"},
		"dup node":     {Name: "x", Nodes: []Node{{Name: "a"}, {Name: "a"}}},
		"unknown node": {Name: "x", Nodes: []Node{{Name: "a"}}, Links: []Link{{A: "a", B: "b"}}},
		"self link":    {Name: "x", Nodes: []Node{{Name: "a"}}, Links: []Link{{A: "a", B: "a"}}},
		"double link": {Name: "x", Nodes: []Node{{Name: "a"}, {Name: "b"}},
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

// TestBuildPoolMultipath: the pool's router holds one multipath route per
// family to the shared service address, with a next hop on every server
// link, and TCP to that address reaches a server (any of them) and back.
func TestBuildPoolMultipath(t *testing.T) {
	needRoot(t)
	l := lab.New()
	defer func() {
		if err := l.Close(); err != nil {
			t.Error(err)
		}
	}()
	tp, err := Build(context.Background(), l, Pool(3))
	if err != nil {
		t.Fatal(err)
	}
	if err := tp.CheckIsolated(); err != nil {
		t.Fatal(err)
	}
	for _, f := range []Family{IPv4, IPv6} {
		fam := netlink.FAMILY_V4
		if f == IPv6 {
			fam = netlink.FAMILY_V6
		}
		routes, err := tp.Namespace(Router).Netlink().RouteList(nil, fam)
		if err != nil {
			t.Fatal(err)
		}
		svc, _ := tp.ServiceAddr("server1", f)
		hops := 0
		for _, r := range routes {
			if r.Dst != nil && r.Dst.IP.Equal(net.IP(svc.AsSlice())) {
				hops = len(r.MultiPath)
			}
		}
		if hops != 3 {
			t.Errorf("%s: route to %s has %d next hops, want 3\n%v", f, svc, hops, routes)
		}
	}
	if a, _ := tp.ServiceAddr("client", IPv4); a.String() != "10.34.1.2" {
		t.Errorf("client has no service address; want its link address, got %s", a)
	}
	// Every server answers on the shared address.
	for _, f := range []Family{IPv4, IPv6} {
		svc, _ := tp.ServiceAddr("server2", f)
		var ln net.Listener
		for _, s := range []string{"server1", "server2", "server3"} {
			if err := tp.Namespace(s).Do(func() error {
				var err error
				ln, err = net.Listen("tcp", netip.AddrPortFrom(svc, 7000).String())
				return err
			}); err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
		}
		var c net.Conn
		if err := tp.Namespace(Client).Do(func() error {
			var err error
			c, err = net.DialTimeout("tcp", netip.AddrPortFrom(svc, 7000).String(), 2*time.Second)
			return err
		}); err != nil {
			t.Fatalf("%s: dial the pool's address: %v", f, err)
		}
		c.Close()
	}
}

func TestValidateRoutes(t *testing.T) {
	p := Pool(2)
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	bad := Pool(2)
	bad.Nodes[len(bad.Nodes)-1].Routes[0].Via = []string{"client", "nobody"}
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "not a neighbour") {
		t.Errorf("route via a non-neighbour: %v", err)
	}
	out := Pool(2)
	out.Nodes[len(out.Nodes)-1].Routes[0].Dst = netip.MustParsePrefix("192.0.2.0/24")
	if err := out.Validate(); err == nil || !strings.Contains(err.Error(), "leaves the lab") {
		t.Errorf("route out of the lab: %v", err)
	}
	lo := Pool(1)
	lo.Nodes[1].Loopback = []netip.Addr{netip.MustParseAddr("10.34.5.5")}
	if err := lo.Validate(); err == nil {
		t.Error("service address inside a link subnet accepted")
	}
}
