package configs

import (
	"slices"
	"strings"
	"testing"
)

func TestHTTPListenNeedsATokenOffLoopback(t *testing.T) {
	cases := []struct {
		name, yaml, want string // want "" means valid
	}{
		{"loopback without token", "http_listen: 127.0.0.1:9464\n", ""},
		{"any address without token", "data_dir: /tmp/d\nhttp_listen: 0.0.0.0:9464\n", "rugwatch.yaml:2: http_listen: must be a loopback address (localhost, 127.0.0.0/8, ::1) unless http_token is set"},
		{"any address with token", "http_listen: 0.0.0.0:9464\nhttp_token: ${env:RUGWATCH_HTTP_TOKEN}\n", ""},
		{"literal token", "http_listen: 0.0.0.0:9464\nhttp_token: hunter2\n", "rugwatch.yaml:2: http_token: must be a ${env:NAME} or ${file:PATH} reference"},
		{"token without listener", "http_token: ${env:T}\n", "rugwatch.yaml:1: http_token: only used with http_listen"},
		{"bad port", "http_listen: 127.0.0.1:http\n", "http_listen: port must be a number"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse([]byte(c.yaml), "rugwatch.yaml")
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Fatalf("error %v, want it to contain %q", err, c.want)
			}
			if err != nil && strings.Contains(err.Error(), "hunter2") {
				t.Errorf("the error quotes the literal token: %v", err)
			}
		})
	}
}

func TestHTTPTokenFileIsHiddenFromSandboxedServers(t *testing.T) {
	c, err := Parse([]byte("http_listen: 0.0.0.0:9464\nhttp_token: ${file:secrets/http_token}\nservers:\n  - name: s\n    command: /bin/true\n"), "/etc/rugwatch/rugwatch.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(c.Servers[0].SandboxHide, "/etc/rugwatch/secrets/http_token") {
		t.Errorf("token file not hidden: %v", c.Servers[0].SandboxHide)
	}
	if c.HTTPLoopback() {
		t.Error("0.0.0.0 reads as loopback")
	}
}

// proxy.token's file, relative to the config like every ${file:}, is
// hidden from sandboxed servers too, as is every token file from the
// classifier's sandbox (both take ReferencedPaths).
func TestProxyTokenFileIsHiddenFromSandboxedServers(t *testing.T) {
	c, err := Parse([]byte("proxy_listen: 0.0.0.0:9465\nproxy:\n  token: ${file:secrets/proxy_token}\nservers:\n  - name: s\n    command: /bin/true\n"), "/etc/rugwatch/rugwatch.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(c.Servers[0].SandboxHide, "/etc/rugwatch/secrets/proxy_token") {
		t.Errorf("proxy token file not hidden: %v", c.Servers[0].SandboxHide)
	}
	if !slices.Contains(c.ReferencedPaths(), "/etc/rugwatch/secrets/proxy_token") {
		t.Errorf("ReferencedPaths leaves out the proxy token: %v", c.ReferencedPaths())
	}
}
