// Package lab is tfolab's engine: it owns the network namespaces of one lab
// instance and everything created inside them, and tears all of it down in
// reverse order of creation.
//
// A Lab is deliberately independent of Ginkgo: the suite registers
// Lab.Close with DeferCleanup right after New, and any other front end (a
// report command, a reproduce mode) calls Close itself. Every resource is
// pushed onto the Lab's cleanup stack the moment it exists, so a failure
// half-way through building a topology still removes what was built.
package lab

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// NamePrefix starts the name of every namespace the lab creates, so that a
// sweeper (and a human with `ip netns list`) can tell them apart.
const NamePrefix = "tfo-"

// runToken identifies this process's run; together with the PID it lets the
// sweeper tell a live run's namespaces from a killed run's leftovers.
var (
	runToken = newRunToken()
	labSeq   atomic.Uint64
)

func newRunToken() string {
	b := make([]byte, 2)
	if _, err := rand.Read(b); err != nil {
		return "0000"
	}
	return hex.EncodeToString(b)
}

// Lab is one instance of the lab: a set of namespaces and what lives in them.
type Lab struct {
	// ID is unique per Lab on this machine: <pid>-<token>-<seq>.
	ID string

	mu       sync.Mutex
	cleanups []cleanup
	closed   bool
	spaces   map[string]*Namespace
}

type cleanup struct {
	what string
	fn   func() error
	// in is the namespace the thing lives in (DeferIn), nil for Defer.
	in *Namespace
}

// New returns an empty Lab with a fresh ID. Call Close when done.
func New() *Lab {
	return &Lab{
		ID:     fmt.Sprintf("%d-%s-%d", os.Getpid(), runToken, labSeq.Add(1)),
		spaces: map[string]*Namespace{},
	}
}

// Defer pushes fn onto the Lab's cleanup stack; Close runs the stack last in,
// first out. what names the resource in error messages.
func (l *Lab) Defer(what string, fn func() error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.cleanups = append(l.cleanups, cleanup{what: what, fn: fn})
}

// DeferIn is Defer for something that lives inside ns (a firewall rule, a
// chain policy, an nft table). When this Lab owns ns, the namespace's own
// deletion, registered before the thing existed and so run after it,
// removes it with everything else in the namespace, and fn is skipped: no
// program runs to undo what is about to vanish. When ns belongs to
// another Lab (rules applied for a while in a longer-lived namespace), fn
// runs as with Defer.
func (l *Lab) DeferIn(ns *Namespace, what string, fn func() error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.cleanups = append(l.cleanups, cleanup{what, fn, ns})
}

// Close tears the Lab down in reverse order of creation and reports every
// failure, not just the first. It is safe to call more than once.
func (l *Lab) Close() error {
	stack, own, ok := l.markClosed()
	if !ok {
		return nil
	}
	var errs []error
	for i := len(stack) - 1; i >= 0; i-- {
		if own[stack[i].in] {
			continue // removed with its namespace, later in this Close
		}
		if err := stack[i].fn(); err != nil {
			errs = append(errs, fmt.Errorf("teardown %s: %w", stack[i].what, err))
		}
	}
	return errors.Join(errs...)
}

// markClosed closes l to new namespaces and hands over, in one critical
// section, what Close tears down: the cleanup stack and l's namespaces
// (whose own cleanups go with them). ok is false if l was closed already.
func (l *Lab) markClosed() (stack []cleanup, own map[*Namespace]bool, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, nil, false
	}
	l.closed = true
	stack, l.cleanups = l.cleanups, nil
	own = make(map[*Namespace]bool, len(l.spaces))
	for _, ns := range l.spaces {
		own[ns] = true
	}
	return stack, own, true
}

// Namespace returns the namespace created for role, or nil.
func (l *Lab) Namespace(role string) *Namespace {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.spaces[role]
}

// Namespaces returns the Lab's namespaces keyed by role.
func (l *Lab) Namespaces() map[string]*Namespace {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string]*Namespace, len(l.spaces))
	for k, v := range l.spaces {
		out[k] = v
	}
	return out
}

var roleRE = regexp.MustCompile(`^[a-z][a-z0-9]{0,11}$`)

// namespaceName is tfo-<labID>-<role>.
func (l *Lab) namespaceName(role string) string {
	return NamePrefix + l.ID + "-" + role
}

// OwnerPID extracts the PID of the process that created a lab namespace from
// its name, or 0 if the name is not a lab name.
func OwnerPID(name string) int {
	rest, ok := strings.CutPrefix(name, NamePrefix)
	if !ok {
		return 0
	}
	pidStr, _, ok := strings.Cut(rest, "-")
	if !ok {
		return 0
	}
	pid, err := strconv.Atoi(pidStr)
	if err != nil || pid <= 0 {
		return 0
	}
	return pid
}
