package firewall

import (
	"bufio"
	"fmt"
	"io"
	"strings"

	"github.com/onsi/gomega/types"
	"github.com/tfolab/tfolab/observation"
)

// Expectation is one line of an expectations file: the verdict the paths
// it matches must get. "*" matches anything.
type Expectation struct {
	Family, Mode, Phase, Detection string
	Kind                           Kind
	Line                           int
}

// Expectations are an example's verdicts, first match wins:
//
//	# family mode phase detection verdict
//	ipv6 * firewall-change * rto
//	* * * * tfo-safe
//	hint none of your rules matched
//
// family is ipv4 or ipv6, mode sendto or connect, phase first-contact or
// firewall-change, detection on or off, verdict one of the Kinds. A hint
// line is text every finding's hint must contain.
type Expectations struct {
	Lines []Expectation
	Hint  string
}

// ParseExpectations reads an expectations file.
func ParseExpectations(r io.Reader) (Expectations, error) {
	var out Expectations
	sc := bufio.NewScanner(r)
	valid := map[int]map[string]bool{
		0: {"ipv4": true, "ipv6": true},
		1: {"sendto": true, "connect": true},
		2: {"first-contact": true, "firewall-change": true},
		3: {"on": true, "off": true},
	}
	kinds := map[string]bool{}
	for _, k := range Kinds {
		kinds[string(k)] = true
	}
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = strings.TrimSpace(line[:i])
		}
		if line == "" {
			continue
		}
		if h, ok := strings.CutPrefix(line, "hint "); ok {
			out.Hint = strings.TrimSpace(h)
			continue
		}
		w := strings.Fields(line)
		if len(w) != 5 {
			return out, fmt.Errorf("line %d: want `family mode phase detection verdict`, got %d words", n, len(w))
		}
		for i := 0; i < 4; i++ {
			if w[i] != "*" && !valid[i][w[i]] {
				return out, fmt.Errorf("line %d: %q is not a %s", n, w[i], []string{"family", "mode", "phase", "detection"}[i])
			}
		}
		if !kinds[w[4]] {
			return out, fmt.Errorf("line %d: %q is not a verdict (want one of %v)", n, w[4], Kinds)
		}
		out.Lines = append(out.Lines, Expectation{w[0], w[1], w[2], w[3], Kind(w[4]), n})
	}
	return out, sc.Err()
}

// For returns the verdict expected for v, if any line matches it.
func (e Expectations) For(v Variant) (Kind, bool) {
	got := []string{strings.ToLower(v.Family.String()), v.Mode.String(), v.Phase.Slug(), onOff(v.Detection)}
	for _, x := range e.Lines {
		want := []string{x.Family, x.Mode, x.Phase, x.Detection}
		match := true
		for i := range got {
			match = match && (want[i] == "*" || want[i] == got[i])
		}
		if match {
			return x.Kind, true
		}
	}
	return "", false
}

// VerdictName is the name of the expectation VerdictIs makes.
const VerdictName = "firewall verdict"

// VerdictIs is an expectation over a variant's observation: the firewall
// check's classification of it is want. A harness run judges it like any
// scenario expectation, so an example's spec and its self-check mutants
// go through the same verdict machinery as the catalogue.
func VerdictIs(v Variant, want Kind) types.GomegaMatcher {
	return verdictMatcher{v, want}
}

type verdictMatcher struct {
	v    Variant
	want Kind
}

func (m verdictMatcher) Name() string { return VerdictName }

func (m verdictMatcher) String() string {
	return fmt.Sprintf("the firewall check says %s: %s", m.v, m.want.Title())
}

func (m verdictMatcher) Match(actual any) (bool, error) {
	obs, ok := actual.(*observation.Observation)
	if !ok || obs == nil {
		return false, fmt.Errorf("firewall: want a *observation.Observation, got %T", actual)
	}
	return Classify(obs, m.v).Kind == m.want, nil
}

func (m verdictMatcher) FailureMessage(actual any) string {
	obs, ok := actual.(*observation.Observation)
	if !ok || obs == nil {
		return fmt.Sprintf("firewall: want a *observation.Observation, got %T", actual)
	}
	f := Classify(obs, m.v)
	return fmt.Sprintf("want %s, got %s\n%s", m.want.Title(), f.Headline(), f.details(false))
}

func (m verdictMatcher) NegatedFailureMessage(any) string {
	return "Expected NOT: " + m.String()
}
