package main

import (
	"strings"
	"testing"
)

// A bad label filter is one plain line: no Ginkgo terminal markup.
func TestCheckLabelsPlainLine(t *testing.T) {
	err := checkLabels("(it's")
	if err == nil {
		t.Fatal("an unbalanced parenthesis passed")
	}
	if msg := err.Error(); strings.Contains(msg, "{{") || strings.Contains(msg, "\n") || !strings.Contains(msg, "Mismatched '('") {
		t.Errorf("message %q: want one plain line naming the mismatch", msg)
	}
	if err := checkLabels("baseline && !slow"); err != nil {
		t.Errorf("a good filter: %v", err)
	}
}
