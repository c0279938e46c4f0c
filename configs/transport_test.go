package configs

import (
	"strings"
	"testing"
)

func TestIsLoopbackHost(t *testing.T) {
	for host, want := range map[string]bool{
		"localhost":        true,
		"LocalHost":        true,
		"127.0.0.1":        true,
		"127.255.3.4":      true,
		"::1":              true,
		"::ffff:127.0.0.1": true,
		// Not loopback: a name under .localhost may resolve anywhere, and so
		// may anything that only looks like loopback.
		"app.localhost":     false,
		"localhost.":        false,
		"localhost.evil.io": false,
		"127.0.0.1.nip.io":  false,
		"127.1":             false,
		"0.0.0.0":           false,
		"::":                false,
		"[::1]":             false, // callers pass Hostname(), without brackets
		"10.0.0.1":          false,
		"example.com":       false,
		"":                  false,
	} {
		if got := IsLoopbackHost(host); got != want {
			t.Errorf("IsLoopbackHost(%q) = %v, want %v", host, got, want)
		}
	}
}

// A header whose value is a secret reference is a credential; plain http to
// another machine would give it to every hop on the way.
func TestSecretHeaderOverPlainHTTPRefused(t *testing.T) {
	const msg = "carries a secret reference but url is plain http:// to a non-loopback host; use https:// (plain http only for localhost, 127.0.0.0/8, ::1)"
	tests := []struct{ name, yml, want string }{
		{"env reference", "servers:\n  - name: remote\n    url: http://mcp.example.com/mcp\n    headers:\n      Authorization: \"Bearer ${env:TOKEN}\"\n",
			`rugwatch.yaml:5: servers[0] "remote": headers.Authorization: ` + msg},
		{"file reference, sse", "servers:\n  - name: a\n    command: x\n  - name: legacy\n    url: http://10.0.0.7:8080/sse\n    transport: sse\n    headers: {X-Api-Key: \"${file:/run/secrets/k}\"}\n",
			`rugwatch.yaml:7: servers[1] "legacy": headers.X-Api-Key: ` + msg},
		{"upper-case scheme", "servers:\n  - name: r\n    url: HTTP://mcp.example.com/\n    headers:\n      Authorization: \"${env:T}\"\n",
			`rugwatch.yaml:5: servers[0] "r": headers.Authorization: ` + msg},
		{"name under .localhost", "servers:\n  - name: r\n    url: http://mcp.localhost:3000/\n    headers:\n      Authorization: \"${env:T}\"\n",
			`rugwatch.yaml:5: servers[0] "r": headers.Authorization: ` + msg},
		{"webhook header", "notify:\n  webhooks:\n    - name: ops\n      url: http://hooks.example.com/x\n      secret: ${env:W}\n      headers:\n        Authorization: \"${env:HOOK_TOKEN}\"\n",
			`rugwatch.yaml:7: notify.webhooks[0] "ops": headers.Authorization: ` + msg},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parse(t, tt.yml)
			if err == nil {
				t.Fatal("Parse accepted a secret header over plain http to a remote host")
			}
			if !containsLine(err.Error(), tt.want) {
				t.Errorf("error lacks line\n%s\ngot:\n%v", tt.want, err)
			}
		})
	}

	// Only the referencing header is named, once; the literal one is fine.
	_, err := parse(t, "servers:\n  - name: r\n    url: http://h.example/\n    headers:\n      X-Team: ops\n      Authorization: \"${env:T}\"\n")
	if err == nil || strings.Count(err.Error(), "\n") != 0 || !strings.Contains(err.Error(), "headers.Authorization") {
		t.Errorf("want one error naming headers.Authorization, got:\n%v", err)
	}
}

func TestSecretHeaderAllowed(t *testing.T) {
	for _, yml := range []string{
		// The same reference over https, or over plain http to this machine.
		"servers:\n  - name: r\n    url: https://mcp.example.com/mcp\n    headers: {Authorization: \"Bearer ${env:T}\"}\n",
		"servers:\n  - name: r\n    url: http://127.0.0.1:3001/mcp\n    headers: {Authorization: \"Bearer ${env:T}\"}\n",
		"servers:\n  - name: r\n    url: http://localhost:3001/mcp\n    headers: {Authorization: \"${file:/run/t}\"}\n",
		"servers:\n  - name: r\n    url: \"http://[::1]:3001/mcp\"\n    transport: sse\n    headers: {Authorization: \"${env:T}\"}\n",
		// A literal value, and an escaped "$${", are not references.
		"servers:\n  - name: r\n    url: http://h.example/mcp\n    headers: {X-Team: ops, X-Tmpl: \"$${env:T}\"}\n",
		"notify:\n  webhooks:\n    - {name: w, url: \"http://127.0.0.1:1/x\", secret: whsec_abc, headers: {Authorization: \"${env:T}\"}}\n",
	} {
		if _, err := parse(t, yml); err != nil {
			t.Errorf("Parse(%q): %v", yml, err)
		}
	}
}

// The shipped configs must still load after the check.
func TestShippedConfigsLoad(t *testing.T) {
	for _, f := range []string{"rugwatch.example.yaml", "demo.yaml"} {
		if _, err := Load(f); err != nil {
			t.Errorf("Load(%s): %v", f, err)
		}
	}
}
