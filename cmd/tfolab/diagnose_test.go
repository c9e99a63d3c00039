package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// examplesDir holds the captures the README diagnoses, and what each
// must get (expect).
const examplesDir = "../../examples/captures"

// Every example capture diagnoses as the README shows, with its exit code,
// through the command as a user runs it.
func TestDiagnoseExamples(t *testing.T) {
	f, err := os.Open(filepath.Join(examplesDir, "expect"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		files, want, ok := strings.Cut(line, "->")
		if !ok {
			t.Fatalf("expect: %q: want FILE [FILE2] -> SERVER=VERDICT... EXIT", line)
		}
		n++
		args := []string{"diagnose", "--json", filepath.Join(t.TempDir(), "report.json")}
		for _, name := range strings.Fields(files) {
			args = append(args, filepath.Join(examplesDir, name))
		}
		fields := strings.Fields(want)
		wantCode := fields[len(fields)-1]
		t.Run(strings.Fields(files)[0], func(t *testing.T) {
			code := "0"
			if err := run(args); err != nil {
				code = "1"
				var ee exitError
				if errors.As(err, &ee) {
					code = string(rune('0' + ee.code))
				}
			}
			if code != wantCode {
				t.Errorf("exit %s, want %s", code, wantCode)
			}
			if wantCode == "2" {
				return
			}
			b, err := os.ReadFile(args[2])
			if err != nil {
				t.Fatal(err)
			}
			var r struct {
				Servers []struct{ Server, Verdict string } `json:"servers"`
			}
			if err := json.Unmarshal(b, &r); err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, s := range r.Servers {
				got = append(got, s.Server+"="+s.Verdict)
			}
			if g, w := strings.Join(got, " "), strings.Join(fields[:len(fields)-1], " "); g != w {
				t.Errorf("verdicts %q, want %q", g, w)
			}
		})
	}
	if n == 0 {
		t.Fatal("expect lists no example")
	}
}
