package configs

import (
	"path/filepath"
	"reflect"
	"slices"
	"testing"
)

func TestSandboxModes(t *testing.T) {
	c, err := Parse([]byte("defaults:\n  sandbox: strict\nservers:\n  - name: a\n    command: x\n  - name: b\n    command: y\n    sandbox: \"off\"\n  - name: r\n    url: https://h/mcp\n"), "/etc/rugwatch/rugwatch.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"a": "strict", "b": "off", "r": ""} {
		if s, _ := c.Server(name); s.Sandbox != want {
			t.Errorf("%s: sandbox = %q, want %q", name, s.Sandbox, want)
		}
	}
	c, err = Parse([]byte("servers:\n  - name: a\n    command: x\n"), "")
	if err != nil {
		t.Fatal(err)
	}
	if s, _ := c.Server("a"); s.Sandbox != "auto" || c.Defaults.Sandbox != "auto" {
		t.Errorf("default sandbox = %q / %q, want auto", s.Sandbox, c.Defaults.Sandbox)
	}
	if s, _ := c.Server("a"); !reflect.DeepEqual(s.SandboxHide, c.ReferencedPaths()) {
		t.Errorf("SandboxHide = %q, want the config's ReferencedPaths", s.SandboxHide)
	}
}

func TestSandboxValidation(t *testing.T) {
	for _, tt := range []struct{ yml, want string }{
		{"defaults:\n  sandbox: maybe\n", `rugwatch.yaml:2: defaults.sandbox: must be auto, strict or off`},
		{"servers:\n  - name: a\n    command: x\n    sandbox: yes\n", `rugwatch.yaml:4: servers[0] "a": sandbox: must be auto, strict or off`},
		{"servers:\n  - name: a\n    command: x\n    sandbox: \"\"\n", `rugwatch.yaml:4: servers[0] "a": sandbox: must be auto, strict or off`},
		{"servers:\n  - name: r\n    url: https://h/\n    sandbox: strict\n", `rugwatch.yaml:4: servers[0] "r": sandbox: only for command servers`},
	} {
		_, err := parse(t, tt.yml)
		if err == nil || !containsLine(err.Error(), tt.want) {
			t.Errorf("%q: error lacks line\n%s\ngot:\n%v", tt.yml, tt.want, err)
		}
	}
}

func TestReferencedPaths(t *testing.T) {
	yml := `data_dir: ./data
trusted_keys: [/etc/rugwatch/keys/a.pub, ./b.pub]
approve_first_seen: true
signing_key: /etc/rugwatch/signer.key
servers:
  - name: a
    command: x
    env: { TOKEN: "Bearer ${file:tok}", PLAIN: "${env:HOME}" }
  - name: r
    url: https://h/mcp
    headers: { Authorization: "${file:/run/secrets/r}${file:/run/secrets/r2}" }
notify:
  webhooks:
    - name: w
      url: https://hooks.example.com/x
      secret: "${file:/run/secrets/whsec}"
      secrets: ["${file:old}"]
      headers: { X-Key: "${file:/run/secrets/wh}" }
  email:
    - name: e
      host: smtp.example.com
      username: u
      password: "${file:/run/secrets/smtp}"
      from: a@example.com
      to: [b@example.com]
`
	c, err := Parse([]byte(yml), "/etc/rugwatch/rugwatch.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"/etc/rugwatch/b.pub", "/etc/rugwatch/data", "/etc/rugwatch/keys/a.pub", "/etc/rugwatch/old",
		"/etc/rugwatch/rugwatch.yaml", "/etc/rugwatch/signer.key", "/etc/rugwatch/tok",
		"/run/secrets/r", "/run/secrets/r2", "/run/secrets/smtp", "/run/secrets/wh", "/run/secrets/whsec",
	}
	if got := c.ReferencedPaths(); !reflect.DeepEqual(got, want) {
		t.Errorf("ReferencedPaths =\n%q\nwant\n%q", got, want)
	}
	// Changed in code (serve's ephemeral data dir), then defaults again.
	c.DataDir = "/var/tmp/eph"
	c.ApplyDefaults()
	if s, _ := c.Server("a"); !slices.Contains(s.SandboxHide, "/var/tmp/eph") {
		t.Errorf("SandboxHide after ApplyDefaults = %q, want the new data dir", s.SandboxHide)
	}
	// A relative config path is made absolute too.
	c, err = Parse([]byte("servers: []\n"), "rugwatch.yaml")
	if err != nil {
		t.Fatal(err)
	}
	abs, _ := filepath.Abs("rugwatch.yaml")
	if got := c.ReferencedPaths(); len(got) < 1 || got[len(got)-1] != abs && got[0] != abs {
		t.Errorf("ReferencedPaths = %q, want %s among them", got, abs)
	}
}
