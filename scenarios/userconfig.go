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

func (n NginxConfig) Validate() error { return validConfig("nginx", n.Path, n.Config) }

func (NginxConfig) Requires() []Program { return []Program{ProgNginx} }

func (NginxConfig) Version() string { return Nginx{}.Version() }

// reNginxOwned are the top-level directives the lab sets itself.
var reNginxOwned = regexp.MustCompile(`(?m)^(\s*)((?:daemon|pid)\s[^;]*;)`)

func (n NginxConfig) Start(ctx context.Context, site Site, node string, addr netip.AddrPort) (ServiceHandle, error) {
	owned := func(conf []byte) []byte { return reNginxOwned.ReplaceAll(conf, []byte("${1}# tfolab sets this: $2")) }
	return startConfigured(ctx, site, node, ProgNginx, n.Path, n.Config, owned, "nginx.conf", proc.Spec{
		Name:       "nginx",
		Args:       []string{"-e", "stderr", "-p", "{dir}/", "-c", "{dir}/nginx.conf", "-g", "daemon off; pid {dir}/nginx.pid;"},
		Ready:      proc.ListeningOn(addr),
		StopSignal: syscall.SIGQUIT,
	})
}

// HAProxyConfig is HAProxy run with a user's haproxy.cfg, in the
// foreground (-db), {dir} and {addr:NODE} placeholders expanded. It must
// listen on the service's address and port.
type HAProxyConfig struct {
	Path   string
	Config []byte
}

func (HAProxyConfig) Kind() string { return "haproxy" }

func (h HAProxyConfig) Validate() error { return validConfig("haproxy", h.Path, h.Config) }

func (HAProxyConfig) Requires() []Program { return []Program{ProgHAProxy} }

func (HAProxyConfig) Version() string { return HAProxy{}.Version() }

func (h HAProxyConfig) Start(ctx context.Context, site Site, node string, addr netip.AddrPort) (ServiceHandle, error) {
	return startConfigured(ctx, site, node, ProgHAProxy, h.Path, h.Config, nil, "haproxy.cfg", proc.Spec{
		Name:  "haproxy",
		Args:  []string{"-db", "-f", "{dir}/haproxy.cfg"},
		Ready: proc.ListeningOn(addr),
	})
}

// validConfig: a user's configuration of prog (path names it) must say
// something.
func validConfig(prog, path string, config []byte) error {
	if len(strings.TrimSpace(string(config))) == 0 {
		return fmt.Errorf("%s: configuration %s is empty", prog, path)
	}
	return nil
}

// startConfigured starts program p as spec says, with a user's
// configuration (path names it in errors), its placeholders expanded,
// then edited by edit (nil: as written), as the file name in its temp dir.
func startConfigured(ctx context.Context, site Site, node string, p Program, path string, config []byte, edit func([]byte) []byte, name string, spec proc.Spec) (ServiceHandle, error) {
	conf, err := expandConfig(site, config)
	if err != nil {
		return nil, fmt.Errorf("%s configuration %s: %w", spec.Name, path, err)
	}
	if edit != nil {
		conf = edit(conf)
	}
	spec.Path = p.Path
	spec.Files = map[string][]byte{name: conf}
	if _, err := startProgram(ctx, site, node, spec, p); err != nil {
		return nil, fmt.Errorf("%s with %s: %w", spec.Name, path, err)
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
