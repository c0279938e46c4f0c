package configs

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"
)

// parse is Parse with the file name used in every expected message.
func parse(t *testing.T, yml string) (*Config, error) {
	t.Helper()
	return Parse([]byte(yml), "rugwatch.yaml")
}

func mustParse(t *testing.T, yml string) *Config {
	t.Helper()
	c, err := parse(t, yml)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return c
}

func TestLoadExample(t *testing.T) {
	// None of the example's references exist here; loading must succeed
	// anyway, because loading never resolves.
	c, err := Load("rugwatch.example.yaml")
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if len(c.Servers) != 2 || len(c.Notify.Webhooks) != 1 || len(c.Notify.Email) != 1 {
		t.Fatalf("got %d servers, %d webhooks, %d email", len(c.Servers), len(c.Notify.Webhooks), len(c.Notify.Email))
	}
	if got := c.Servers[0].Env["API_KEY"].Template(); got != "${env:EVERYTHING_KEY}" {
		t.Errorf("env template = %q", got)
	}
	if got := c.Servers[1].Headers["Authorization"].Template(); got != "Bearer ${file:/run/secrets/remote_token}" {
		t.Errorf("header template = %q", got)
	}
	if got := c.Notify.Email[0].Password.Template(); got != "${env:SMTP_PASSWORD}" {
		t.Errorf("password template = %q", got)
	}
	if s, ok := c.Server("remote"); !ok || s.Transport != TransportHTTP || !s.Watch || s.EffectiveSchedule(c.Defaults) != "@every 1m" {
		t.Errorf("Server(remote) = %+v, %v", s, ok)
	}
	if _, ok := c.Server("nope"); ok {
		t.Error("Server(nope) found")
	}

	// Every reference fails clearly, one line each, naming entry and key.
	err = c.CheckReferences(Resolver{
		LookupEnv: func(string) (string, bool) { return "", false },
		ReadFile:  func(string) ([]byte, error) { return nil, os.ErrNotExist },
	})
	// Lines are looked up, so that a key added above them moves nothing.
	example, _ := os.ReadFile("rugwatch.example.yaml")
	at := func(needle string) string {
		return fmt.Sprintf("rugwatch.example.yaml:%d: ", lineOf(t, string(example), needle))
	}
	for _, want := range []string{
		at("API_KEY: ") + `servers[0] "everything": env.API_KEY: ${env:EVERYTHING_KEY}: not set`,
		at("remote_token") + `servers[1] "remote": headers.Authorization: ${file:/run/secrets/remote_token}: no such file`,
		at("secret: \"${env:RUGWATCH_WEBHOOK_SECRET}") + `notify.webhooks[0] "ops": secret: ${env:RUGWATCH_WEBHOOK_SECRET}: not set`,
		at("old_webhook_secret") + `notify.webhooks[0] "ops": secrets[0]: ${file:./old_webhook_secret}: no such file`,
		at("SMTP_PASSWORD") + `notify.email[0] "security": password: ${env:SMTP_PASSWORD}: not set`,
	} {
		if err == nil || !containsLine(err.Error(), want) {
			t.Errorf("CheckReferences error lacks line\n%s\ngot:\n%v", want, err)
		}
	}

	// With everything present it passes.
	err = c.CheckReferences(Resolver{
		LookupEnv: func(string) (string, bool) { return "x", true },
		ReadFile:  func(string) ([]byte, error) { return []byte("x\n"), nil },
	})
	if err != nil {
		t.Errorf("CheckReferences with all present: %v", err)
	}
}

func containsLine(text, line string) bool {
	for _, l := range strings.Split(text, "\n") {
		if l == line {
			return true
		}
	}
	return false
}

func TestDefaults(t *testing.T) {
	c := mustParse(t, `
servers:
  - name: a
    command: ./srv
  - name: b
    url: https://example.com/mcp
    timeout: 5s
notify:
  webhooks: [{name: w, url: "https://h.example/x", secret: "${env:W_SECRET}"}]
  email:
    - {name: e1, host: smtp.example.com, from: a@example.com, to: [b@example.com]}
    - {name: e2, host: smtp.example.com, tls: tls, from: a@example.com, to: [b@example.com]}
    - {name: e3, host: localhost, tls: none, from: a@example.com, to: [b@example.com]}
`)
	dir, _ := filepath.Abs(".")
	checks := []struct {
		name      string
		got, want any
	}{
		{"data_dir", c.DataDir, filepath.Join(dir, "data")},
		{"trusted_keys", c.TrustedKeys, []string{filepath.Join(dir, "data", "approver.pub")}},
		{"concurrency", c.Concurrency, max(16, 8*runtime.GOMAXPROCS(0))},
		{"unreachable_after", c.UnreachableAfter, 3},
		{"client_info", c.ClientInfo, ClientInfo{Name: "rugwatch", Version: "dev"}},
		{"defaults.schedule", c.Defaults.Schedule, "@every 5m"},
		{"defaults.timeout", c.Defaults.Timeout, Duration(30 * time.Second)},
		{"limits", c.Limits, Limits{16 << 20, 64 << 20, 64, 10000, 100, 1 << 20, 64 << 10, 500}},
		{"a.transport", c.Servers[0].Transport, "stdio"},
		{"b.transport", c.Servers[1].Transport, "http"},
		{"a.schedule", c.Servers[0].EffectiveSchedule(c.Defaults), "@every 5m"},
		{"a.timeout", c.Servers[0].EffectiveTimeout(c.Defaults), 30 * time.Second},
		{"b.timeout", c.Servers[1].EffectiveTimeout(c.Defaults), 5 * time.Second},
		{"a.line", c.Servers[0].Line, 3},
		{"b.line", c.Servers[1].Line, 5},
		{"webhook.min_severity", c.Notify.Webhooks[0].MinSeverity, "warning"},
		{"e1.tls", c.Notify.Email[0].TLS, "starttls"},
		{"e1.port", c.Notify.Email[0].Port, 587},
		{"e2.port", c.Notify.Email[1].Port, 465},
		{"e3.port", c.Notify.Email[2].Port, 25},
		{"e1.min_severity", c.Notify.Email[0].MinSeverity, "warning"},
		{"zero server timeout", Server{}.EffectiveTimeout(Defaults{}), 30 * time.Second},
		{"zero server schedule", Server{}.EffectiveSchedule(Defaults{}), "@every 5m"},
	}
	for _, ck := range checks {
		if !reflect.DeepEqual(ck.got, ck.want) {
			t.Errorf("%s = %v, want %v", ck.name, ck.got, ck.want)
		}
	}
}

func TestEmptyConfig(t *testing.T) {
	for _, yml := range []string{"", "# nothing\n", "servers: []\n", "servers:\n"} {
		c, err := parse(t, yml)
		if err != nil {
			t.Errorf("Parse(%q): %v", yml, err)
			continue
		}
		if len(c.Servers) != 0 || c.Concurrency != max(16, 8*runtime.GOMAXPROCS(0)) {
			t.Errorf("Parse(%q) = %+v", yml, c)
		}
	}
}

func TestRelativePaths(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "rugwatch.yaml")
	yml := `
data_dir: state
trusted_keys: [keys/a.pub, /abs/b.pub]
approve_first_seen: true
signing_key: ./keys/approver.key
servers:
  - name: a
    command: ./srv
    cwd: work
    env: {TOKEN: "${file:secrets/token}"}
  - name: b
    command: srv
    cwd: /abs/cwd
`
	if err := os.WriteFile(path, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "secrets"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "secrets", "token"), []byte("tok\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct{ name, got, want string }{
		{"data_dir", c.DataDir, filepath.Join(dir, "state")},
		{"trusted_keys[0]", c.TrustedKeys[0], filepath.Join(dir, "keys", "a.pub")},
		{"trusted_keys[1]", c.TrustedKeys[1], "/abs/b.pub"},
		{"signing_key", c.SigningKey, filepath.Join(dir, "keys", "approver.key")},
		{"a.cwd", c.Servers[0].Cwd, filepath.Join(dir, "work")},
		{"b.cwd", c.Servers[1].Cwd, "/abs/cwd"},
		{"Path", c.Path, path},
	}
	for _, ck := range checks {
		if ck.got != ck.want {
			t.Errorf("%s = %q, want %q", ck.name, ck.got, ck.want)
		}
	}
	// A relative ${file:} is taken against the config's directory, not the
	// working directory, and the template keeps what was written.
	tok, err := c.Servers[0].Env["TOKEN"].Resolve(DefaultResolver())
	if err != nil || tok != "tok" {
		t.Errorf("Resolve = %q, %v", tok, err)
	}
	if got := c.Servers[0].Env["TOKEN"].Template(); got != "${file:secrets/token}" {
		t.Errorf("Template = %q", got)
	}

	// data_dir set, trusted_keys not: the default follows data_dir.
	c = mustParse(t, "data_dir: /var/lib/rugwatch\n")
	if want := []string{"/var/lib/rugwatch/approver.pub"}; !reflect.DeepEqual(c.TrustedKeys, want) {
		t.Errorf("trusted_keys = %v, want %v", c.TrustedKeys, want)
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.yaml"))
	if err == nil || !strings.Contains(err.Error(), "read config") {
		t.Errorf("Load of a missing file: %v", err)
	}
}

func TestValidateBuiltInCode(t *testing.T) {
	c := &Config{Servers: []Server{{Name: "a", Command: "srv"}}}
	c.ApplyDefaults()
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	c.Servers = append(c.Servers, Server{Name: "B", URL: "gopher://x"})
	c.ApplyDefaults()
	err := c.Validate()
	for _, want := range []string{
		`config: servers[1] "B": name: must match [a-z0-9][a-z0-9._-]*`,
		`config: servers[1] "B": url: must be http or https`,
	} {
		if err == nil || !containsLine(err.Error(), want) {
			t.Errorf("Validate lacks %q, got:\n%v", want, err)
		}
	}
}

// lineOf is the 1-based number of the first line of text holding needle.
func lineOf(t *testing.T, text, needle string) int {
	t.Helper()
	for i, line := range strings.Split(text, "\n") {
		if strings.Contains(line, needle) {
			return i + 1
		}
	}
	t.Fatalf("no line holds %q", needle)
	return 0
}
