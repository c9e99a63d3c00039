package report

import (
	"encoding/xml"
	"fmt"
	"os"
	"strings"
)

// JUnit XML (the schema CI systems read: testsuites/testsuite/testcase,
// failure with a message and a body).
type junitSuites struct {
	XMLName xml.Name     `xml:"testsuites"`
	Suites  []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name       string          `xml:"name,attr"`
	Tests      int             `xml:"tests,attr"`
	Failures   int             `xml:"failures,attr"`
	Errors     int             `xml:"errors,attr"`
	Time       float64         `xml:"time,attr"`
	Timestamp  string          `xml:"timestamp,attr"`
	Properties []junitProperty `xml:"properties>property"`
	Cases      []junitCase     `xml:"testcase"`
}

type junitProperty struct {
	Name  string `xml:"name,attr"`
	Value string `xml:"value,attr"`
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	Classname string        `xml:"classname,attr"`
	Time      float64       `xml:"time,attr"`
	Failure   *junitFailure `xml:"failure,omitempty"`
	Error     *junitFailure `xml:"error,omitempty"`
	Skipped   *junitFailure `xml:"skipped,omitempty"`
	SystemOut string        `xml:"system-out,omitempty"`
}

type junitFailure struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr"`
	Body    string `xml:",chardata"`
}

// WriteJUnit writes the report as one test suite, a test case per scenario.
func WriteJUnit(r *Report, path string) error {
	s := junitSuite{
		Name: "tfolab report", Tests: len(r.Scenarios), Time: r.Wall.Seconds(),
		Timestamp: r.Started.UTC().Format("2006-01-02T15:04:05"),
		Properties: []junitProperty{
			{"kernel", r.Kernel}, {"lab_version", r.LabVersion}, {"rtt", r.RTT.String()},
		},
	}
	for _, p := range r.Profiles {
		for _, f := range p.Files {
			s.Properties = append(s.Properties, junitProperty{"profile." + p.Scope, f.Name + " sha256:" + f.SHA256})
		}
	}
	for _, sc := range r.Scenarios {
		c := junitCase{Name: sc.Name, Classname: "tfolab." + area(sc.Name), Time: sc.Wall.Seconds()}
		var measured []string
		for _, v := range sc.Verdicts {
			if v.Measured != "" {
				measured = append(measured, v.Name+": "+v.Measured)
			}
		}
		c.SystemOut = strings.Join(measured, "\n")
		switch {
		case sc.Unsupported != "":
			c.Skipped = &junitFailure{Message: sc.Unsupported, Type: "unsupported"}
		case sc.Error != "" || sc.Teardown != "":
			s.Errors++
			c.Error = &junitFailure{Message: firstLine(sc.Error + sc.Teardown), Type: "run", Body: sc.Error + "\n" + sc.Teardown}
		case !sc.Pass:
			s.Failures++
			var body strings.Builder
			for _, v := range sc.Verdicts {
				if !v.Pass {
					fmt.Fprintf(&body, "✗ %s: %s\n%s\n\n", v.Name, v.Statement, v.Evidence)
				}
			}
			fmt.Fprintf(&body, "artefacts: %s\n", sc.Artefacts)
			c.Failure = &junitFailure{Message: failedNames(sc), Type: "expectation", Body: body.String()}
		}
		s.Cases = append(s.Cases, c)
	}
	b, err := xml.MarshalIndent(junitSuites{Suites: []junitSuite{s}}, "", " ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append([]byte(xml.Header), append(b, '\n')...), 0o644)
}
