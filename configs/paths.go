package configs

import (
	"path/filepath"
	"sort"
)

// ReferencedPaths lists every file and directory of rugwatch's own that
// this config names: the config file itself, the data dir, the trusted
// keys, the signing key and every ${file:} secret of every server, webhook
// and email channel and of http_token and proxy.token, all absolute. It is what a sandboxed server must not
// reach; the caller adds what the config does not name (the control
// socket, a key outside the data dir).
func (c *Config) ReferencedPaths() []string {
	seen := map[string]bool{}
	add := func(p, dir string) {
		if p == "" {
			return
		}
		if !filepath.IsAbs(p) && dir != "" {
			p = filepath.Join(dir, p)
		}
		if abs, err := filepath.Abs(p); err == nil {
			p = abs
		}
		seen[filepath.Clean(p)] = true
	}
	addSecret := func(s Secret) {
		parts, _ := parseTemplate(s.tmpl)
		for _, p := range parts {
			if p.kind == partFile {
				add(p.text, s.dir)
			}
		}
	}
	addSecrets := func(m map[string]Secret) {
		for _, s := range m {
			addSecret(s)
		}
	}
	add(c.Path, "")
	add(c.DataDir, "")
	for _, k := range c.TrustedKeys {
		add(k, "")
	}
	add(c.SigningKey, "")
	add(c.ApprovalsFrom, "")
	for _, s := range c.Servers {
		addSecrets(s.Env)
		addSecrets(s.Headers)
	}
	for _, w := range c.Notify.Webhooks {
		addSecret(w.Secret)
		for _, s := range w.Secrets {
			addSecret(s)
		}
		addSecrets(w.Headers)
	}
	for _, e := range c.Notify.Email {
		addSecret(e.Password)
	}
	addSecret(c.HTTPToken)
	addSecret(c.Proxy.Token)
	addSecret(c.Store)
	out := make([]string, 0, len(seen))
	for p := range seen {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}
