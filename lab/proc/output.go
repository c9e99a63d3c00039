package proc

import (
	"bytes"
	"context"
	"errors"
	"io"
	"regexp"
	"sync"
)

const (
	// MaxOutput is how much of a process's combined stdout and stderr is
	// kept: the last MaxOutput bytes.
	MaxOutput = 1 << 20
	// maxLine bounds the line a FirstLine pattern is matched against; a
	// longer line is matched in pieces of this size.
	maxLine = 64 << 10
)

// errOutputClosed says the process's output ended without a matching line.
var errOutputClosed = errors.New("output ended")

// output keeps the tail of a process's output and hands complete lines to
// waiters as they arrive.
type output struct {
	mu       sync.Mutex
	buf      []byte // the last MaxOutput bytes (up to twice that before a trim)
	dropped  int64  // bytes trimmed from the front of buf
	partial  []byte // the current incomplete line
	waiters  []*lineWaiter
	closed   bool
	eof      chan struct{} // closed when the reader has finished
	maxBytes int
}

type lineWaiter struct {
	re   *regexp.Regexp
	line chan string // buffered 1
}

func newOutput(max int) *output {
	return &output{eof: make(chan struct{}), maxBytes: max}
}

// readFrom copies r into o until r ends or is closed.
func (o *output) readFrom(r io.ReadCloser) {
	defer close(o.eof)
	defer r.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		o.write(buf[:n])
		if err != nil {
			o.finish()
			return
		}
	}
}

func (o *output) write(b []byte) {
	if len(b) == 0 {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.buf = append(o.buf, b...)
	// Trim lazily, at twice the bound, so that a chatty process costs
	// amortised O(1) per byte.
	if len(o.buf) > 2*o.maxBytes {
		cut := len(o.buf) - o.maxBytes
		o.dropped += int64(cut)
		o.buf = append(o.buf[:0], o.buf[cut:]...)
	}
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			o.partial = append(o.partial, b...)
			if len(o.partial) >= maxLine {
				o.lineLocked(o.partial)
				o.partial = o.partial[:0]
			}
			return
		}
		o.partial = append(o.partial, b[:i]...)
		o.lineLocked(o.partial)
		o.partial = o.partial[:0]
		b = b[i+1:]
	}
}

// finish treats a last line without a newline as a line and wakes waiters.
func (o *output) finish() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.partial) > 0 {
		o.lineLocked(o.partial)
		o.partial = nil
	}
	o.closed = true
}

func (o *output) lineLocked(line []byte) {
	line = bytes.TrimSuffix(line, []byte("\r"))
	kept := o.waiters[:0]
	for _, w := range o.waiters {
		if w.re.Match(line) {
			w.line <- string(line)
			continue
		}
		kept = append(kept, w)
	}
	o.waiters = kept
}

// bytes returns a copy of the kept output.
func (o *output) bytes() []byte {
	o.mu.Lock()
	defer o.mu.Unlock()
	start := 0
	if len(o.buf) > o.maxBytes {
		start = len(o.buf) - o.maxBytes
	}
	return bytes.Clone(o.buf[start:])
}

// tail returns about the last n bytes, starting at a line boundary when
// one is near, for error messages.
func (o *output) tail(n int) string {
	b := o.bytes()
	if len(b) <= n {
		return string(b)
	}
	b = b[len(b)-n:]
	if i := bytes.IndexByte(b, '\n'); i >= 0 && i < n/4 {
		b = b[i+1:]
	}
	return "…" + string(b)
}

// waitLine returns the first line (already kept, or still to come) that
// matches re, or errOutputClosed once the output has ended without one.
func (o *output) waitLine(ctx context.Context, re *regexp.Regexp) (string, error) {
	o.mu.Lock()
	// Lines that arrived before the call: complete lines of buf. (If buf
	// was trimmed, its first line may be a fragment; that is the price of
	// the bound.)
	kept := o.buf
	if i := bytes.LastIndexByte(kept, '\n'); i >= 0 {
		kept = kept[:i]
	} else {
		kept = nil
	}
	for _, line := range bytes.Split(kept, []byte("\n")) {
		line = bytes.TrimSuffix(line, []byte("\r"))
		if len(kept) > 0 && re.Match(line) {
			o.mu.Unlock()
			return string(line), nil
		}
	}
	if o.closed {
		// finish already matched the final fragment against nobody; do it
		// for this waiter.
		last := o.buf[len(kept):]
		last = bytes.TrimPrefix(last, []byte("\n"))
		o.mu.Unlock()
		if len(last) > 0 && re.Match(bytes.TrimSuffix(last, []byte("\r"))) {
			return string(last), nil
		}
		return "", errOutputClosed
	}
	w := &lineWaiter{re: re, line: make(chan string, 1)}
	o.waiters = append(o.waiters, w)
	o.mu.Unlock()

	select {
	case line := <-w.line:
		return line, nil
	case <-o.eof:
		select {
		case line := <-w.line:
			return line, nil
		default:
			return "", errOutputClosed
		}
	case <-ctx.Done():
		o.mu.Lock()
		for i, x := range o.waiters {
			if x == w {
				o.waiters = append(o.waiters[:i], o.waiters[i+1:]...)
				break
			}
		}
		o.mu.Unlock()
		return "", ctx.Err()
	}
}
