package main

import (
	"errors"
	"regexp"
	"strings"

	"github.com/onsi/ginkgo/v2/types"
	"github.com/spf13/cobra"
)

func newCheckLabelsCmd() *cobra.Command {
	return command("check-labels", groupHost, argsBetween(1, 1, "one label filter EXPR (quote it)"), completeLabel,
		func(_ *cobra.Command, args []string) error { return checkLabels(args[0]) })
}

// ginkgoMarkup is how Ginkgo marks the offending spot up for its own
// terminal formatter ("{{red}}{{bold}}({{/}}").
var ginkgoMarkup = regexp.MustCompile(`\{\{/?[a-z-]*\}\}`)

// checkLabels parses a Ginkgo label filter the way the suite will, so a
// syntax error is one line before anything is built or run.
func checkLabels(expr string) error {
	if strings.TrimSpace(expr) == "" {
		return nil
	}
	if _, err := types.ParseLabelFilter(expr); err != nil {
		msg := err.Error()
		var ge types.GinkgoError
		if errors.As(err, &ge) {
			msg = strings.Join(strings.Fields(ge.Message), " ")
		}
		// A plain line has no use for Ginkgo's markup.
		msg = ginkgoMarkup.ReplaceAllString(msg, "")
		return badInput("LABELS=%q is not a label filter: %s", expr, msg)
	}
	return nil
}
