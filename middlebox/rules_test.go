package middlebox

import (
	"strings"
	"testing"

	"github.com/tfolab/tfolab/lab"
	"github.com/tfolab/tfolab/lab/rules"
)

// Golden xt_bpf bytecodes (literal, so a change in the assembler shows up).
const (
	synData4 = `"20,48 0 0 9,21 0 17 6,40 0 0 6,69 15 0 8191,177 0 0 0,80 0 0 13,84 0 0 18,21 0 11 2,80 0 0 12,84 0 0 240,116 0 0 2,2 0 0 0,135 0 0 0,97 0 0 0,12 0 0 0,7 0 0 0,40 0 0 2,45 0 1 0,6 0 0 1,6 0 0 0"`
	data4    = `"20,48 0 0 9,21 0 17 6,40 0 0 6,69 15 0 8191,177 0 0 0,80 0 0 13,84 0 0 2,21 0 11 0,80 0 0 12,84 0 0 240,116 0 0 2,2 0 0 0,135 0 0 0,97 0 0 0,12 0 0 0,7 0 0 0,40 0 0 2,45 0 1 0,6 0 0 1,6 0 0 0"`
	synData6 = `"13,48 0 0 6,21 0 10 6,48 0 0 53,84 0 0 18,21 0 7 2,48 0 0 52,84 0 0 240,116 0 0 2,7 0 0 0,40 0 0 4,45 0 1 0,6 0 0 1,6 0 0 0"`
	synAck4  = `"20,48 0 0 9,21 0 17 6,40 0 0 6,69 15 0 8191,177 0 0 0,80 0 0 13,84 0 0 18,21 0 11 18,80 0 0 12,84 0 0 240,116 0 0 2,2 0 0 0,135 0 0 0,97 0 0 0,12 0 0 0,7 0 0 0,40 0 0 2,45 0 1 0,6 0 0 1,6 0 0 0"`
	synAck6  = `"13,48 0 0 6,21 0 10 6,48 0 0 53,84 0 0 18,21 0 7 18,48 0 0 52,84 0 0 240,116 0 0 2,7 0 0 0,40 0 0 4,45 0 1 0,6 0 0 1,6 0 0 0"`
	data6    = `"13,48 0 0 6,21 0 10 6,48 0 0 53,84 0 0 2,21 0 7 0,48 0 0 52,84 0 0 240,116 0 0 2,7 0 0 0,40 0 0 4,45 0 1 0,6 0 0 1,6 0 0 0"`
)

// golden returns the expected command lines; TS/BK are the to-server and
// back chains, SD/DA the bytecodes, P the program (all in braces).
func golden(name, prog, ts, bk, sd, da, sa string) []string {
	rj := "icmp-admin-prohibited"
	if prog == "ip6tables" {
		rj = "icmp6-adm-prohibited"
	}
	r := strings.NewReplacer("{P}", prog, "{TS}", ts, "{BK}", bk, "{SD}", sd, "{DA}", da, "{SA}", sa, "{RJ}", rj)
	var g []string
	for _, l := range goldenRaw[name] {
		g = append(g, r.Replace(l))
	}
	return g
}

var goldenRaw = map[string][]string{
	"drop-syn-data": {
		"{P} -t filter -A {TS} -p tcp --syn --dport 7413 -m bpf --bytecode {SD} -j DROP",
	},
	"reset-syn-data": {
		"{P} -t filter -A {TS} -p tcp --syn --dport 7413 -m bpf --bytecode {SD} -j REJECT --reject-with tcp-reset",
	},
	"reject-syn-data": {
		"{P} -t filter -A {TS} -p tcp --syn --dport 7413 -m bpf --bytecode {SD} -j REJECT --reject-with {RJ}",
	},
	"strip-tfo-option": {
		"{P} -t mangle -A {TS} -p tcp --syn --dport 7413 -j TCPOPTSTRIP --strip-options 34,254",
	},
	"drop-cookie-request": {
		"{P} -t filter -A {TS} -p tcp --syn --dport 7413 --tcp-option 34 -j DROP",
		"{P} -t filter -A {TS} -p tcp --syn --dport 7413 --tcp-option 254 -j DROP",
	},
	"drop-tfo-synack": {
		"{P} -t mangle -A {TS} -p tcp --syn --dport 7413 -m bpf --bytecode {SD} -j CONNMARK --set-mark 0x7413",
		"{P} -t filter -A {BK} -p tcp --sport 7413 --tcp-flags SYN,ACK SYN,ACK -m connmark --mark 0x7413 -j DROP",
	},
	"blackhole-after-handshake": {
		"{P} -t mangle -A {TS} -p tcp --syn --dport 7413 --tcp-option 34 -j CONNMARK --set-mark 0x7413",
		"{P} -t mangle -A {TS} -p tcp --syn --dport 7413 --tcp-option 254 -j CONNMARK --set-mark 0x7413",
		"{P} -t mangle -A {TS} -p tcp --syn --dport 7413 -m bpf --bytecode {SD} -j CONNMARK --set-mark 0x7413",
		"{P} -t filter -A {TS} -p tcp --dport 7413 -m connmark --mark 0x7413 -m bpf --bytecode {DA} -j DROP",
		"{P} -t filter -A {BK} -p tcp --sport 7413 -m connmark --mark 0x7413 -m bpf --bytecode {DA} -j DROP",
	},
	"drop-tfo-replies": {
		"{P} -t mangle -A {TS} -p tcp --syn --dport 7413 -m bpf --bytecode {SD} -j CONNMARK --set-mark 0x7413",
		"{P} -t filter -A {BK} -p tcp --sport 7413 -m connmark --mark 0x7413 -j DROP",
	},
	"drop-synack-data": {
		"{P} -t filter -A {BK} -p tcp --sport 7413 --tcp-flags SYN,ACK SYN,ACK -m bpf --bytecode {SA} -j DROP",
	},
	"drop-tfo-client-data": {
		"{P} -t mangle -A {TS} -p tcp --syn --dport 7413 -m bpf --bytecode {SD} -j CONNMARK --set-mark 0x7413",
		"{P} -t filter -A {TS} -p tcp --dport 7413 -m connmark --mark 0x7413 -m bpf --bytecode {DA} -j DROP",
	},
	"drop-tfo-server-data-and-fin": {
		"{P} -t mangle -A {TS} -p tcp --syn --dport 7413 -m bpf --bytecode {SD} -j CONNMARK --set-mark 0x7413",
		"{P} -t filter -A {BK} -p tcp --sport 7413 -m connmark --mark 0x7413 -m bpf --bytecode {DA} -j DROP",
		"{P} -t filter -A {BK} -p tcp --sport 7413 --tcp-flags FIN FIN -m connmark --mark 0x7413 -j DROP",
	},
}

func TestCatalogueOrderAndNames(t *testing.T) {
	want := []string{"drop-syn-data", "reset-syn-data", "reject-syn-data", "low-mtu", "strip-tfo-option", "drop-cookie-request", "drop-tfo-synack", "blackhole-after-handshake", "drop-tfo-replies", "drop-synack-data", "drop-tfo-client-data", "drop-tfo-server-data-and-fin"}
	got := Catalogue()
	if len(got) != len(want) {
		t.Fatalf("catalogue has %d entries, want %d", len(got), len(want))
	}
	for i, m := range got {
		if m.Name != want[i] || m.Description == "" || (m.Rules == nil && m.Install == nil) {
			t.Errorf("entry %d = %q (description %q), want %q with description and rules or an installer", i, m.Name, m.Description, want[i])
		}
		if _, ok := ByName(m.Name); !ok {
			t.Errorf("ByName(%q) not found", m.Name)
		}
	}
	if _, ok := ByName("custom"); ok {
		t.Error(`ByName("custom") found; custom is not in the catalogue`)
	}
	got[0].Name = "mutated"
	if Catalogue()[0].Name != "drop-syn-data" {
		t.Error("Catalogue returns shared storage")
	}
}

func TestRulesGolden(t *testing.T) {
	placements := []struct {
		p      Placement
		ts, bk string
	}{
		{Router, "FORWARD", "FORWARD"},
		{ClientSide, "OUTPUT", "INPUT"},
		{ServerSide, "INPUT", "OUTPUT"},
	}
	fams := []struct {
		f                  lab.Family
		prog, sd, data, sa string
	}{
		{lab.IPv4, "iptables", synData4, data4, synAck4},
		{lab.IPv6, "ip6tables", synData6, data6, synAck6},
	}
	for _, fam := range fams {
		for _, pl := range placements {
			for _, m := range Catalogue() {
				if m.Rules == nil { // an installer: its own test
					continue
				}
				t.Run(fam.f.String()+"/"+pl.p.String()+"/"+m.Name, func(t *testing.T) {
					rs, err := m.Rules(fam.f, Params{ServicePort: 7413, Placement: pl.p})
					if err != nil {
						t.Fatal(err)
					}
					want := golden(m.Name, fam.prog, pl.ts, pl.bk, fam.sd, fam.data, fam.sa)
					if len(rs) != len(want) {
						t.Fatalf("%d rules, want %d", len(rs), len(want))
					}
					for i, r := range rs {
						if got := rules.CommandLine(fam.f, r); got != want[i] {
							t.Errorf("rule %d:\n got %s\nwant %s", i+1, got, want[i])
						}
						if r.Line != 0 {
							t.Errorf("rule %d: Line %d, want 0", i+1, r.Line)
						}
					}
				})
			}
		}
	}
}

func TestRulesInvalidParams(t *testing.T) {
	m, _ := ByName("drop-syn-data")
	for _, tc := range []struct {
		f lab.Family
		p Params
	}{
		{lab.IPv4, Params{}},
		{lab.Family(5), Params{ServicePort: 80}},
		{lab.IPv4, Params{ServicePort: 80, Placement: Placement(9)}},
	} {
		if _, err := m.Rules(tc.f, tc.p); err == nil {
			t.Errorf("Rules(%v, %+v) succeeded, want error", tc.f, tc.p)
		}
	}
}

// TestTemplatesFilled: a misspelt template word ({PROT}) would reach
// iptables verbatim; every rule of every built-in behaviour, in every
// family and placement, must have all its words filled in.
func TestTemplatesFilled(t *testing.T) {
	for _, m := range Catalogue() {
		if m.Rules == nil {
			continue
		}
		for _, f := range []lab.Family{lab.IPv4, lab.IPv6} {
			for p := range placements {
				rs, err := m.Rules(f, Params{ServicePort: 7413, Placement: Placement(p)})
				if err != nil {
					t.Fatalf("%s %v %v: %v", m.Name, f, Placement(p), err)
				}
				for i, r := range rs {
					for _, w := range append([]string{r.Table, r.Chain}, r.Spec...) {
						if strings.HasPrefix(w, "{") && strings.HasSuffix(w, "}") {
							t.Errorf("%s %v %v rule %d: template word %s left unfilled", m.Name, f, Placement(p), i+1, w)
						}
					}
				}
			}
		}
	}
}
