package labfile

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// The README's quick start shows examples/labs/quickstart/lab.yaml (the
// suite runs that file): the two must not drift apart.
func TestReadmeQuickStartIsTheExample(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)```yaml\n(name: quickstart\n.*?)```").FindSubmatch(readme)
	if m == nil {
		t.Fatal("README.md: no yaml block starting `name: quickstart`")
	}
	file, err := os.ReadFile("../examples/labs/quickstart/lab.yaml")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(string(file), "\n")
	for len(lines) > 0 && strings.HasPrefix(lines[0], "#") {
		lines = lines[1:] // the file's own header comment
	}
	if got, want := string(m[1]), strings.Join(lines, ""); got != want {
		t.Errorf("README.md's quick start differs from examples/labs/quickstart/lab.yaml (less its header):\n--- README\n%s--- file\n%s", got, want)
	}
	if _, err := Load("../examples/labs/quickstart/lab.yaml"); err != nil {
		t.Error(err)
	}
}
