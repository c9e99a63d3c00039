package main

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"github.com/tfolab/tfolab/scenarios"
)

// Shell completion: cobra's `completion` command writes the scripts; the
// functions here give them the catalogue's words.

// completeScenario completes the first argument with the catalogue's
// scenario names (their labels as the description zsh and fish show).
func completeScenario(_ *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	return scenarioNames(toComplete), cobra.ShellCompDirectiveNoFileComp
}

// scenarioNames are the catalogue's names that start with prefix.
func scenarioNames(prefix string) []cobra.Completion {
	var out []cobra.Completion
	for _, s := range scenarios.Catalogue() {
		if strings.HasPrefix(s.Name, prefix) {
			out = append(out, cobra.CompletionWithDesc(s.Name, strings.Join(s.Labels, ",")))
		}
	}
	return out
}

// completeLabel completes the first argument with the catalogue's labels.
func completeLabel(_ *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	return labelWords(toComplete), cobra.ShellCompDirectiveNoFileComp
}

// labelWords are the catalogue's labels that start with prefix, each
// with how many scenarios carry it.
func labelWords(prefix string) []cobra.Completion {
	count := map[string]int{}
	for _, s := range scenarios.Catalogue() {
		for _, l := range s.Labels {
			count[l]++
		}
	}
	var out []cobra.Completion
	for _, l := range slices.Sorted(maps.Keys(count)) {
		if strings.HasPrefix(l, prefix) {
			out = append(out, cobra.CompletionWithDesc(l, scenarioCount(count[l])))
		}
	}
	return out
}

// completeLabelFlag completes a flag's label filter with labels.
func completeLabelFlag(_ *cobra.Command, _ []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	return labelWords(toComplete), cobra.ShellCompDirectiveNoFileComp
}

// completeFiles completes with files whose names end in one of exts
// (no dot), or with any file when exts is empty.
func completeFiles(exts ...string) cobra.CompletionFunc {
	return func(*cobra.Command, []string, string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(exts) == 0 {
			return nil, cobra.ShellCompDirectiveDefault
		}
		return exts, cobra.ShellCompDirectiveFilterFileExt
	}
}

// completeDirs completes with folders.
func completeDirs(*cobra.Command, []string, string) ([]cobra.Completion, cobra.ShellCompDirective) {
	return nil, cobra.ShellCompDirectiveFilterDirs
}

// completeWords completes with a fixed set of words.
func completeWords(words ...string) cobra.CompletionFunc {
	return cobra.FixedCompletions(words, cobra.ShellCompDirectiveNoFileComp)
}

// flagCompletion registers completion f for flag name of c. The only
// errors are a flag c does not have or one registered twice, mistakes
// TestFlagCompletions catches; at a user's prompt the flag then completes
// as a file name, which is harmless.
func flagCompletion(c *cobra.Command, name string, f cobra.CompletionFunc) {
	_ = c.RegisterFlagCompletionFunc(name, f)
}

// scenarioCount is "1 scenario", "n scenarios".
func scenarioCount(n int) string {
	if n == 1 {
		return "1 scenario"
	}
	return fmt.Sprintf("%d scenarios", n)
}

// completeFileArgs completes each of the first n arguments with files
// whose names end in one of exts, and nothing after them.
func completeFileArgs(n int, exts ...string) cobra.CompletionFunc {
	return func(_ *cobra.Command, args []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) >= n {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		return exts, cobra.ShellCompDirectiveFilterFileExt
	}
}
