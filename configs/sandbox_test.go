package configs

import (
	"strings"
	"testing"

	"github.com/rugwatch/rugwatch/sandbox"
)

// Every sandbox key mistake is an error that names its line and key.
func TestSandboxKeyErrors(t *testing.T) {
	tests := []struct{ name, yml, want string }{
		{"network", "defaults:\n  network: open\n",
			`rugwatch.yaml:2: defaults.network: must be egress, none or host`},
		{"egress wildcard", "servers:\n  - name: a\n    command: x\n    egress: [\"*:443\"]\n",
			`rugwatch.yaml:4: servers[0] "a": egress[0]:`},
		{"egress no port", "defaults:\n  egress: [api.github.com]\n",
			`rugwatch.yaml:2: defaults.egress[0]:`},
		{"memory", "servers:\n  - name: a\n    command: x\n    resources: {memory: lots}\n",
			`rugwatch.yaml:4: servers[0] "a": resources.memory: not a size: write bytes, or a number with KiB, MiB or GiB (512MiB)`},
		{"memory too small", "defaults:\n  resources: {memory: 1MiB}\n",
			`rugwatch.yaml:2: defaults.resources.memory: at least 16MiB: no runtime starts in less`},
		{"pids", "defaults:\n  resources: {pids: 0}\n",
			`rugwatch.yaml:2: defaults.resources.pids: must be greater than 0`},
		{"cpu", "defaults:\n  resources: {cpu: fast}\n",
			`rugwatch.yaml:2: defaults.resources.cpu: must be a number`},
		{"mount relative", "servers:\n  - name: a\n    command: x\n    mounts: [{path: projects}]\n",
			`rugwatch.yaml:4: servers[0] "a": mounts[0].path: must be an absolute path`},
		{"mount mode", "servers:\n  - name: a\n    command: x\n    mounts: [{path: /srv, mode: write}]\n",
			`rugwatch.yaml:4: servers[0] "a": mounts[0].mode: must be ro or rw`},
		{"mount root", "servers:\n  - name: a\n    command: x\n    mounts: [{path: /}]\n",
			`rugwatch.yaml:4: servers[0] "a": mounts[0].path: the whole host is not a grant; name the directory the server needs`},
		{"mount data dir", "data_dir: /var/lib/rw\nservers:\n  - name: a\n    command: x\n    mounts: [{path: /var/lib/rw/servers}]\n",
			`rugwatch.yaml:5: servers[0] "a": mounts[0].path: lies inside /var/lib/rw, which no server may reach`},
		{"rw mount holding the data dir", "data_dir: /home/me/work/data\nservers:\n  - name: a\n    command: x\n    mounts: [{path: /home/me/work, mode: rw}]\n",
			`rugwatch.yaml:5: servers[0] "a": mounts[0].path: is granted rw and holds /home/me/work/data, which no server may reach: grant a directory beside it, or ro`},
		{"mount on a url server", "servers:\n  - name: a\n    url: https://h/\n    mounts: [{path: /srv}]\n",
			`rugwatch.yaml:4: servers[0] "a": mounts: only for command servers: it confines a server rugwatch starts`},
		{"unknown key", "servers:\n  - name: a\n    command: x\n    mounts: [{path: /srv, mdoe: rw}]\n",
			`rugwatch.yaml:4:`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parse(t, tt.yml)
			if err == nil {
				t.Fatalf("Parse succeeded: %+v", c)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error lacks\n%s\ngot:\n%v", tt.want, err)
			}
		})
	}
}

// The effective sandbox of a server folds its keys over the defaults, and
// a package runner may reach its registry.
func TestEffectiveSandbox(t *testing.T) {
	c, err := parse(t, `data_dir: /var/lib/rw
defaults:
  network: none
  egress: ["api.example.com:443"]
  resources: {memory: 256MiB, pids: 64}
servers:
  - name: a
    command: npx
    args: ["-y", "pkg@1.0.0"]
    network: egress
    egress: ["*.github.com:443"]
    resources: {pids: 32}
    mounts: [{path: /srv/data, mode: rw}, {path: /srv/ro}]
  - name: b
    command: uvx
    env: {npm_config_registry: "https://npm.internal:8443/"}
`)
	if err != nil {
		t.Fatal(err)
	}
	a, b := c.Servers[0], c.Servers[1]
	if got := a.EffectiveNetwork(c.Defaults); got != sandbox.NetEgress {
		t.Errorf("a network %q", got)
	}
	if got := b.EffectiveNetwork(c.Defaults); got != sandbox.NetNone {
		t.Errorf("b network %q", got)
	}
	if got := strings.Join(a.EffectiveEgress(c.Defaults), " "); got != "api.example.com:443 *.github.com:443 registry.npmjs.org:443" {
		t.Errorf("a egress %q", got)
	}
	if got := strings.Join(b.EffectiveEgress(c.Defaults), " "); got != "api.example.com:443 pypi.org:443 files.pythonhosted.org:443" {
		t.Errorf("b egress %q", got)
	}
	if got := a.EffectiveResources(c.Defaults); got.MemoryBytes != 256<<20 || got.Pids != 32 {
		t.Errorf("a resources %+v", got)
	}
	if m := a.SandboxMounts(); len(m) != 2 || !m[0].Write || m[1].Write {
		t.Errorf("a mounts %+v", m)
	}
	if got := c.ServerHome("a"); got != "/var/lib/rw/servers/a/home" {
		t.Errorf("home %q", got)
	}
	if got := LauncherEgress("npx", map[string]Secret{"npm_config_registry": {tmpl: "https://npm.internal:8443/"}}); len(got) != 1 || got[0] != "npm.internal:8443" {
		t.Errorf("npx with its own registry: %v", got)
	}
	if got := LauncherEgress("npx", map[string]Secret{"npm_config_registry": {tmpl: "${env:REG}"}}); got[0] != "registry.npmjs.org:443" {
		t.Errorf("a registry behind a reference must not be read: %v", got)
	}
}
