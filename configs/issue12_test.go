package configs

import (
	"strings"
	"testing"
)

// servers[].integrity and require_tls: errors name the line.
func TestIntegrityAndRequireTLS(t *testing.T) {
	const good = "sha512-5U3OZh8Xq0Li4nA26l6uNvV9/1suMDuWSn+NjLZIhzinhMY6N3A4DCrxVecBGPf2PsNFKTEv5krxGPRwzxc7jQ=="
	bad := []struct{ name, yml, want string }{
		{"integrity not npx", "servers:\n  - name: a\n    command: node\n    integrity: " + good + "\n",
			`rugwatch.yaml:4: servers[0] "a": integrity: only for npx launches`},
		{"integrity malformed", "servers:\n  - name: a\n    command: npx\n    args: [-y, pkg@1.0.0]\n    integrity: sha1-abc\n",
			`rugwatch.yaml:5: servers[0] "a": integrity: must be an npm integrity`},
		{"integrity empty", "servers:\n  - name: a\n    command: npx\n    integrity: \"\"\n",
			`rugwatch.yaml:4: servers[0] "a": integrity: must be an npm integrity`},
		{"require_tls plain", "servers:\n  - name: r\n    url: http://mcp.example.com/mcp\n    require_tls: true\n",
			`rugwatch.yaml:3: servers[0] "r": url: plain http:// with require_tls: true; use https://`},
		{"require_tls loopback", "servers:\n  - name: r\n    url: http://127.0.0.1:3001/mcp\n    require_tls: true\n",
			`rugwatch.yaml:3: servers[0] "r": url: plain http:// with require_tls: true`},
		{"require_tls command", "servers:\n  - name: r\n    command: x\n    require_tls: true\n",
			`rugwatch.yaml:4: servers[0] "r": require_tls: only for url servers`},
	}
	for _, tc := range bad {
		_, err := Parse([]byte(tc.yml), "rugwatch.yaml")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
	for _, yml := range []string{
		"servers:\n  - name: a\n    command: /usr/bin/npx\n    args: [-y, pkg@1.0.0]\n    integrity: " + good + "\n",
		"servers:\n  - name: r\n    url: https://mcp.example.com/mcp\n    require_tls: true\n",
	} {
		if _, err := Parse([]byte(yml), "rugwatch.yaml"); err != nil {
			t.Errorf("%q: %v", yml, err)
		}
	}
}
