package tfolab_test

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/tfolab/tfolab/lab"
)

// tfolabBinary is the command line: the one scripts/suite.sh built
// (TFOLAB_BIN), or one this spec builds when the suite runs without it.
func tfolabBinary() string {
	if bin := os.Getenv("TFOLAB_BIN"); bin != "" {
		return bin
	}
	return buildTFOLab()
}

// buildTFOLab builds cmd/tfolab into a folder removed after the spec.
func buildTFOLab() string {
	dir, err := os.MkdirTemp("", "tfolab-bin-")
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(os.RemoveAll, dir)
	bin := filepath.Join(dir, "tfolab")
	goTool := os.Getenv("GO")
	if goTool == "" {
		goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	out, err := exec.Command(goTool, "build", "-o", bin, "./cmd/tfolab").CombinedOutput()
	Expect(err).NotTo(HaveOccurred(), "go build ./cmd/tfolab: %s", out)
	return bin
}

var nsLine = regexp.MustCompile(`^  node (\S+): namespace (\S+)$`)
var serviceLine = regexp.MustCompile(`^  service service: (\S+):(\d+)$`)

// A live lab for a person: `tfolab run --keep` keeps the namespaces and
// the servers up, and the seed's Python client, run with `ip netns exec`
// as a user would paste it, gets TFO through it.
func keepSpec() spec {
	return spec{"tfolab run --keep keeps a baseline lab alive for ip netns exec and the seed's Python client, then leaves nothing after SIGINT",
		[]string{"baseline", "keep"}, 30 * time.Second, keepBody}
}

func keepBody(ctx SpecContext) {
	const python = "/usr/bin/python3"
	if _, err := os.Stat(python); err != nil {
		Fail("Debian's python3 is missing: `make deps` installs it")
	}
	cmd := exec.Command(tfolabBinary(), "run", "baseline/routed/ipv4/sendto/cookie-then-data", "--keep", "--out", filepath.Join(outDir(), "keep"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdout, err := cmd.StdoutPipe()
	Expect(err).NotTo(HaveOccurred())
	var stderr strings.Builder
	cmd.Stderr = &stderr
	Expect(cmd.Start()).To(Succeed())
	exited := make(chan error, 1)
	DeferCleanup(func() {
		// Whatever happened, the process group goes.
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
		}
	})

	// Read up to the readiness line: the namespaces and the service.
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		_, _ = io.Copy(io.Discard, stdout)
		exited <- cmd.Wait()
	}()
	namespaces := map[string]string{}
	var service, port string
	var transcript strings.Builder
read:
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				Fail(fmt.Sprintf("tfolab run ended before it was ready:\n%s%s", transcript.String(), stderr.String()))
			}
			transcript.WriteString(l + "\n")
			if m := nsLine.FindStringSubmatch(l); m != nil {
				namespaces[m[1]] = m[2]
			}
			if m := serviceLine.FindStringSubmatch(l); m != nil {
				service, port = m[1], m[2]
			}
			if strings.HasPrefix(l, "tfolab: ready") {
				break read
			}
		case <-ctx.Done():
			Fail("no readiness line:\n" + transcript.String())
		}
	}
	Expect(transcript.String()).To(ContainSubstring("PASS: "), "the scenario itself passed")
	Expect(namespaces).To(HaveKey("client"))
	Expect(namespaces).To(HaveKey("server"))
	Expect(service).To(Equal("10.34.2.2"))
	go func() { // keep draining, so the process never blocks on a full pipe
		for range lines {
		}
	}()

	inNS := func(node string, args ...string) string {
		out, err := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", namespaces[node]}, args...)...).CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), "ip netns exec %s %s: %s", namespaces[node], strings.Join(args, " "), out)
		return string(out)
	}
	passive := func() int64 {
		c := lab.Counters{}
		Expect(lab.ParseSNMP([]byte(inNS("server", "cat", "/proc/net/netstat")), c)).To(Succeed())
		v, ok := c.Get(lab.TCPFastOpenPassive)
		Expect(ok).To(BeTrue())
		return v
	}
	// Start from an empty cookie cache (the seed's recipe), so the
	// first Python connection asks for a cookie and the second uses it.
	inNS("client", "ip", "tcp_metrics", "flush")
	before := passive()
	for i := range 2 {
		reply := inNS("client", python, "scripts/tfo_client.py", service, port)
		Expect(reply).To(Equal("HEAD / HTTP/1.0\r\n"), "connection %d: the listener echoes the request line", i+1)
	}
	Expect(passive()-before).To(BeEquivalentTo(1), "the second connection's data went in the SYN and the server accepted it (TCPFastOpenPassive +1)")
	Expect(inNS("client", "ip", "tcp_metrics", "show", service)).To(ContainSubstring("fo_cookie"), "the client cached the server's cookie")

	Expect(syscall.Kill(cmd.Process.Pid, syscall.SIGINT)).To(Succeed())
	select {
	case err := <-exited:
		Expect(err).NotTo(HaveOccurred(), "tfolab run exits 0 after SIGINT: %s", stderr.String())
	case <-time.After(10 * time.Second):
		Fail("tfolab run did not exit within 10 s of SIGINT")
	}
	left, err := lab.ListNamespaces()
	Expect(err).NotTo(HaveOccurred())
	for _, ns := range namespaces {
		Expect(left).NotTo(ContainElement(ns), "namespace left after SIGINT")
	}
	Expect(lab.OwnerPID(namespaces["client"])).To(Equal(cmd.Process.Pid), "the namespaces were the run's own")
}
