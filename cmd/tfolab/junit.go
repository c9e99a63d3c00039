package main

import (
	"encoding/xml"
	"fmt"
)

// junitCase is one test case of a JUnit report, as Ginkgo writes it (its
// status attribute) and as the report writes it (its properties): what
// junit-summary and cost read.
type junitCase struct {
	Name   string `xml:"name,attr"`
	Status string `xml:"status,attr"`
	Props  []struct {
		Name  string `xml:"name,attr"`
		Value string `xml:"value,attr"`
	} `xml:"properties>property"`
}

// junitCases are the test cases of every suite of a JUnit report, in order.
func junitCases(b []byte) ([]junitCase, error) {
	var doc struct {
		Suites []struct {
			Cases []junitCase `xml:"testcase"`
		} `xml:"testsuite"`
	}
	if err := xml.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("not a JUnit report: %w", err)
	}
	var cases []junitCase
	for _, s := range doc.Suites {
		cases = append(cases, s.Cases...)
	}
	return cases, nil
}
