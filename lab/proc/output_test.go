package proc

import (
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestOutputKeepsTheTail(t *testing.T) {
	o := newOutput(10)
	for i := 0; i < 100; i++ {
		o.write([]byte("0123456789abc"))
	}
	got := o.bytes()
	if string(got) != "3456789abc" {
		t.Fatalf("kept %q, want the last 10 bytes %q", got, "3456789abc")
	}
	if len(o.buf) > 2*10 {
		t.Errorf("buffer grew to %d bytes, bound 2x10", len(o.buf))
	}
}

func TestWaitLineSeesEarlierAndLaterLines(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	o := newOutput(MaxOutput)
	r, w := io.Pipe()
	go o.readFrom(r)
	io.WriteString(w, "starting\r\nlistening on 1")
	// A line printed before the wait began counts (once complete).
	go func() {
		io.WriteString(w, "234\nother\n")
	}()
	line, err := o.waitLine(ctx, regexp.MustCompile(`^listening on (\d+)$`))
	if err != nil || line != "listening on 1234" {
		t.Fatalf("waitLine = %q, %v; want the listening line", line, err)
	}
	line, err = o.waitLine(ctx, regexp.MustCompile(`^starting$`))
	if err != nil || line != "starting" {
		t.Fatalf("waitLine for an earlier line = %q, %v (the \\r of CRLF must go)", line, err)
	}
	go func() {
		time.Sleep(10 * time.Millisecond)
		io.WriteString(w, "late line\nno newline at the end")
		w.Close()
	}()
	if line, err := o.waitLine(ctx, regexp.MustCompile(`^late`)); err != nil || line != "late line" {
		t.Fatalf("waitLine for a later line = %q, %v", line, err)
	}
	<-o.eof
	if line, err := o.waitLine(ctx, regexp.MustCompile(`end$`)); err != nil || line != "no newline at the end" {
		t.Fatalf("waitLine for the unterminated last line = %q, %v", line, err)
	}
	if _, err := o.waitLine(ctx, regexp.MustCompile(`never`)); !errors.Is(err, errOutputClosed) {
		t.Fatalf("waitLine after EOF without a match: %v, want errOutputClosed", err)
	}
}

func TestWaitLineHonoursContext(t *testing.T) {
	o := newOutput(MaxOutput)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := o.waitLine(ctx, regexp.MustCompile(`x`)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want DeadlineExceeded", err)
	}
	if len(o.waiters) != 0 {
		t.Errorf("%d waiters left registered after the context ended", len(o.waiters))
	}
}

func TestTail(t *testing.T) {
	o := newOutput(MaxOutput)
	o.write([]byte(strings.Repeat("a line of output\n", 100)))
	tail := o.tail(100)
	if !strings.HasPrefix(tail, "…a line") || len(tail) > 110 {
		t.Errorf("tail = %q, want about 100 bytes starting at a line", tail)
	}
}

func TestLookPath(t *testing.T) {
	if p, err := lookPath("sh", DefaultPATH); err != nil || !strings.HasSuffix(p, "/sh") {
		t.Errorf("lookPath(sh) = %q, %v", p, err)
	}
	_, err := lookPath("tfolab-no-such-binary", DefaultPATH)
	if !errors.Is(err, exec.ErrNotFound) || !strings.Contains(err.Error(), "tfolab-no-such-binary") || !strings.Contains(err.Error(), "make deps") {
		t.Errorf("lookPath of a missing binary: %v; want ErrNotFound naming it and \"make deps\"", err)
	}
	plain := filepath.Join(t.TempDir(), "plain")
	if err := os.WriteFile(plain, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := lookPath(plain, DefaultPATH); !errors.Is(err, exec.ErrNotFound) {
		t.Errorf("lookPath of a non-executable file: %v, want ErrNotFound", err)
	}
	// The caller's PATH is not consulted: a pyenv shim must never win.
	t.Setenv("PATH", t.TempDir())
	if p, err := lookPath("sh", DefaultPATH); err != nil || !strings.HasPrefix(p, "/") {
		t.Errorf("lookPath(sh) with an empty caller PATH = %q, %v", p, err)
	}
}
