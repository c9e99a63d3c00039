package scenarios

// Real peers run with a user's own configuration file (a scenario file's
// `config:`), rather than the configuration the lab writes for its own
// scenarios.

import (
	"context"
	"fmt"
	"net/netip"
	"regexp"
	"strings"
	"syscall"

	"github.com/tfolab/tfolab/lab/proc"
	"github.com/tfolab/tfolab/observation"
)

// reNodeAddr is the placeholder a user's configuration names another
// node's service address with: {addr:NODE}.
var reNodeAddr = regexp.MustCompile(`\{addr:([A-Za-z0-9_.-]+)\}`)

// expandConfig replaces {addr:NODE} with NODE's service address in the
// scenario's family (bracketed for IPv6, as nginx and HAProxy write an
// address before a port); proc replaces {dir} with the peer's temp dir.
func expandConfig(site Site, config []byte) ([]byte, error) {
	var err error
	out := reNodeAddr.ReplaceAllFunc(config, func(m []byte) []byte {
		node := string(reNodeAddr.FindSubmatch(m)[1])
		a, aerr := site.Topo.ServiceAddr(node, site.Family)
		if aerr != nil {
			err = fmt.Errorf("%s: %w", m, aerr)
			return m
		}
		if a.Is6() {
			return []byte("[" + a.String() + "]")
		}
		return []byte(a.String())
	})
	return out, err
}

// nodeAddrs are the nodes a configuration's placeholders name.
func nodeAddrs(config []byte) []string {
	var out []string
	for _, m := range reNodeAddr.FindAllSubmatch(config, -1) {
		out = append(out, string(m[1]))
	}
	return out
}

// NginxConfig is nginx run with a user's nginx.conf (Path names it in
// errors and observations). The lab runs it in the foreground with its
// pid file in its temp dir ({dir}); top-level `daemon` and `pid` lines of
// the file are commented out for that, everything else is as written,
// {dir} and {addr:NODE} placeholders expanded. It must listen on the
// service's address and port (a wildcard listen covers it).
type NginxConfig struct {
	Path   string
	Config []byte
}

func (NginxConfig) Kind() string { return "nginx" }

func (n NginxConfig) Validate() error {
	if len(strings.TrimSpace(string(n.Config))) == 0 {
		return fmt.Errorf("nginx: configuration %s is empty", n.Path)
	}
	return nil
}

func (NginxConfig) Requires() []Program { return []Program{ProgNginx} }

func (NginxConfig) Version() string { return Nginx{}.Version() }

// reNginxOwned are the top-level directives the lab sets itself.
var reNginxOwned = regexp.MustCompile(`(?m)^(\s*)((?:daemon|pid)\s[^;]*;)`)

func (n NginxConfig) Start(ctx context.Context, site Site, node string, addr netip.AddrPort) (ServiceHandle, error) {
	conf, err := expandConfig(site, n.Config)
	if err != nil {
		return nil, fmt.Errorf("nginx configuration %s: %w", n.Path, err)
	}
	conf = reNginxOwned.ReplaceAll(conf, []byte("${1}# tfolab sets this: $2"))
	if _, err := startProgram(ctx, site, node, proc.Spec{
		Name:       "nginx",
		Path:       ProgNginx.Path,
		Args:       []string{"-e", "stderr", "-p", "{dir}/", "-c", "{dir}/nginx.conf", "-g", "daemon off; pid {dir}/nginx.pid;"},
		Files:      map[string][]byte{"nginx.conf": conf},
		Ready:      proc.ListeningOn(addr),
		StopSignal: syscall.SIGQUIT,
	}, ProgNginx); err != nil {
		return nil, fmt.Errorf("nginx with %s: %w", n.Path, err)
	}
	return noRecords{}, nil
}

// HAProxyConfig is HAProxy run with a user's haproxy.cfg, in the
// foreground (-db), {dir} and {addr:NODE} placeholders expanded. It must
// listen on the service's address and port.
type HAProxyConfig struct {
	Path   string
	Config []byte
}

func (HAProxyConfig) Kind() string { return "haproxy" }

func (h HAProxyConfig) Validate() error {
	if len(strings.TrimSpace(string(h.Config))) == 0 {
		return fmt.Errorf("haproxy: configuration %s is empty", h.Path)
	}
	return nil
}

func (HAProxyConfig) Requires() []Program { return []Program{ProgHAProxy} }

func (HAProxyConfig) Version() string { return HAProxy{}.Version() }

func (h HAProxyConfig) Start(ctx context.Context, site Site, node string, addr netip.AddrPort) (ServiceHandle, error) {
	conf, err := expandConfig(site, h.Config)
	if err != nil {
		return nil, fmt.Errorf("haproxy configuration %s: %w", h.Path, err)
	}
	if _, err := startProgram(ctx, site, node, proc.Spec{
		Name:  "haproxy",
		Path:  ProgHAProxy.Path,
		Args:  []string{"-db", "-f", "{dir}/haproxy.cfg"},
		Files: map[string][]byte{"haproxy.cfg": conf},
		Ready: proc.ListeningOn(addr),
	}, ProgHAProxy); err != nil {
		return nil, fmt.Errorf("haproxy with %s: %w", h.Path, err)
	}
	return noRecords{}, nil
}

// ConfigNodes are the nodes a user's configuration names with
// {addr:NODE}, for a scenario file's validation.
func ConfigNodes(config []byte) []string { return nodeAddrs(config) }

// noRecords is a peer whose log format is the user's: the captures and
// counters say what it accepted.
type noRecords struct{}

func (noRecords) Accepted() []observation.Accepted { return nil }
