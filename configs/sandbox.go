package configs

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/rugwatch/rugwatch/sandbox"
)

// Resources bound one sandboxed server. Zero fields take the default (the
// server's own, else defaults.resources, else the sandbox's).
type Resources struct {
	Memory string  `yaml:"memory"` // "512MiB": per process
	Pids   int     `yaml:"pids"`   // processes and threads
	CPU    float64 `yaml:"cpu"`    // cores; needs a delegated cgroup
}

// Mount grants a sandboxed server one more host path.
type Mount struct {
	Path string `yaml:"path"`
	Mode string `yaml:"mode"` // ro (default) | rw
}

// Mount modes.
const (
	MountRO = "ro"
	MountRW = "rw"
)

// EffectiveNetwork is the server's network, else the default one.
func (s Server) EffectiveNetwork(d Defaults) sandbox.Network {
	n := s.Network
	if n == "" {
		n = d.Network
	}
	net, err := sandbox.ParseNetwork(n)
	if err != nil {
		return sandbox.NetNone // validation refuses it; never more than none
	}
	return net
}

// EffectiveEgress is what the server may reach through the egress path:
// defaults.egress, its own egress, and the registry its launcher needs
// (npx's, uvx's), so that a package runner can fetch the package it runs.
func (s Server) EffectiveEgress(d Defaults) []string {
	out := append(append([]string(nil), d.Egress...), s.Egress...)
	return append(out, LauncherEgress(s.Command, s.Env)...)
}

// LauncherEgress is the package registry a launcher fetches from: npm's
// for npx (its configured registry when the server's env sets one), PyPI
// for uvx and pipx.
func LauncherEgress(command string, env map[string]Secret) []string {
	switch filepath.Base(command) {
	case "npx", "npm", "pnpm", "yarn", "bunx":
		for _, k := range []string{"npm_config_registry", "NPM_CONFIG_REGISTRY"} {
			// A registry written plainly; one behind a reference is a
			// secret and stays out of the allow-list (add it to egress).
			if parts, err := parseTemplate(env[k].tmpl); err == nil && len(parts) == 1 && parts[0].kind == partLiteral {
				if hp := registryHostPort(parts[0].text); hp != "" {
					return []string{hp}
				}
			}
		}
		return []string{"registry.npmjs.org:443"}
	case "uvx", "uv", "pipx":
		return []string{"pypi.org:443", "files.pythonhosted.org:443"}
	}
	return nil
}

// registryHostPort is host:port of a registry URL, or "".
func registryHostPort(u string) string {
	rest, ok := strings.CutPrefix(u, "https://")
	port := "443"
	if !ok {
		if rest, ok = strings.CutPrefix(u, "http://"); !ok {
			return ""
		}
		port = "80"
	}
	host, _, _ := strings.Cut(rest, "/")
	if strings.Contains(host, ":") {
		return host
	}
	return host + ":" + port
}

// EffectiveResources folds the server's resources over the defaults.
func (s Server) EffectiveResources(d Defaults) sandbox.Resources {
	pick := func(r Resources) sandbox.Resources {
		mem, _ := ParseSize(r.Memory)
		return sandbox.Resources{MemoryBytes: mem, Pids: r.Pids, CPU: r.CPU}
	}
	out, def := pick(s.Resources), pick(d.Resources)
	if out.MemoryBytes == 0 {
		out.MemoryBytes = def.MemoryBytes
	}
	if out.Pids == 0 {
		out.Pids = def.Pids
	}
	if out.CPU == 0 {
		out.CPU = def.CPU
	}
	return out
}

// SandboxMounts are the server's grants for the sandbox.
func (s Server) SandboxMounts() []sandbox.Mount {
	out := make([]sandbox.Mount, len(s.Mounts))
	for i, m := range s.Mounts {
		out[i] = sandbox.Mount{Path: m.Path, Write: m.Mode == MountRW}
	}
	return out
}

// ServerHome is a server's private, persistent HOME: npx and uvx caches,
// a memory server's file. No other server sees it.
func (c *Config) ServerHome(name string) string {
	return filepath.Join(c.DataDir, "servers", name, "home")
}

// EgressKey names where a destination would be allowed, with its line:
// the server's egress key when it has one, else where one would go.
func (c *Config) EgressKey(i int) string {
	p := fmt.Sprintf("servers[%d].egress", i)
	if l := c.lineOf(p); l > 0 && c.has(p) {
		return fmt.Sprintf("%s (%s line %d)", p, c.Path, l)
	}
	name := ""
	if i >= 0 && i < len(c.Servers) {
		name = " (server " + c.Servers[i].Name + ")"
	}
	if l := c.lineOf(fmt.Sprintf("servers[%d]", i)); l > 0 {
		return fmt.Sprintf("servers[%d].egress%s, a new key under the entry at %s line %d", i, name, c.Path, l)
	}
	return fmt.Sprintf("servers[%d].egress%s in %s", i, name, c.Path)
}

// ParseSize reads a size: bytes, or a number with KiB, MiB, GiB, TiB (or
// K, M, G, T, the same powers of 1024). "" is 0.
func ParseSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, nil
	}
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40}, {"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"T", 1 << 40}} {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mult = strings.TrimSpace(n), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("not a size: write bytes, or a number with KiB, MiB or GiB (512MiB)")
	}
	return n * mult, nil
}

// sandboxKeys checks the sandbox keys of defaults or of one server.
func (v *validator) sandboxKeys(p, network string, egress []string, r Resources, mounts []Mount) {
	if network != "" || v.c.has(p+".network") {
		if _, err := sandbox.ParseNetwork(network); err != nil {
			v.fail(p+".network", "must be egress, none or host")
		}
	}
	for i, e := range egress {
		if err := sandbox.ValidateEgressPattern(e); err != nil {
			v.fail(fmt.Sprintf("%s.egress[%d]", p, i), "%v", err)
		}
	}
	if r.Memory != "" || v.c.has(p+".resources.memory") {
		if n, err := ParseSize(r.Memory); err != nil {
			v.fail(p+".resources.memory", "%v", err)
		} else if n < 16<<20 {
			v.fail(p+".resources.memory", "at least 16MiB: no runtime starts in less")
		}
	}
	if r.Pids < 0 || (r.Pids == 0 && v.c.has(p+".resources.pids")) {
		v.fail(p+".resources.pids", "must be greater than 0")
	} else if r.Pids > 0 && r.Pids < 8 {
		v.fail(p+".resources.pids", "at least 8: a runtime starts threads of its own")
	}
	if r.CPU < 0 || (r.CPU == 0 && v.c.has(p+".resources.cpu")) {
		v.fail(p+".resources.cpu", "must be greater than 0")
	}
	protected := v.c.ReferencedPaths()
	for i, m := range mounts {
		mp := fmt.Sprintf("%s.mounts[%d]", p, i)
		switch {
		case !filepath.IsAbs(m.Path):
			v.fail(mp+".path", "must be an absolute path")
			continue
		case m.Mode != "" && m.Mode != MountRO && m.Mode != MountRW:
			v.fail(mp+".mode", "must be ro or rw")
		}
		clean := filepath.Clean(m.Path)
		if clean == "/" {
			v.fail(mp+".path", "the whole host is not a grant; name the directory the server needs")
			continue
		}
		for _, pr := range protected {
			if clean == pr || strings.HasPrefix(clean, pr+"/") {
				v.fail(mp+".path", "lies inside %s, which no server may reach", pr)
				break
			}
			// Covered only by path, a protected path inside a writable
			// grant could be renamed out from under its cover.
			if m.Mode == MountRW && strings.HasPrefix(pr, clean+"/") {
				v.fail(mp+".path", "is granted rw and holds %s, which no server may reach: grant a directory beside it, or ro", pr)
				break
			}
		}
	}
}
