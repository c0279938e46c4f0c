package configs

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

const secretValue = "SUPERSECRET"

// fakeResolver serves SUPERSECRET for $SECRET and /run/secret, in the
// shapes files really have.
func fakeResolver() Resolver {
	files := map[string]string{
		"/run/secret":      secretValue + "\n",
		"/run/crlf":        secretValue + "\r\n",
		"/run/twolines":    secretValue + "\n\n",
		"/run/nonewline":   secretValue,
		"/run/empty":       "\n",
		"/conf/dir/rel.tk": secretValue + "\n",
	}
	return Resolver{
		LookupEnv: func(k string) (string, bool) {
			switch k {
			case "SECRET":
				return secretValue, true
			case "EMPTY":
				return "", true
			}
			return "", false
		},
		ReadFile: func(p string) ([]byte, error) {
			if v, ok := files[p]; ok {
				return []byte(v), nil
			}
			return nil, &fs.PathError{Op: "open", Path: p, Err: fs.ErrNotExist}
		},
	}
}

func TestResolve(t *testing.T) {
	tests := []struct {
		tmpl, want, wantErr string
	}{
		{tmpl: "${env:SECRET}", want: secretValue},
		{tmpl: "Bearer ${env:SECRET}", want: "Bearer " + secretValue},
		{tmpl: "${env:SECRET}:${file:/run/secret}", want: secretValue + ":" + secretValue},
		{tmpl: "${file:/run/secret}", want: secretValue},
		{tmpl: "${file:/run/crlf}", want: secretValue},
		{tmpl: "${file:/run/twolines}", want: secretValue + "\n"},
		{tmpl: "${file:/run/nonewline}", want: secretValue},
		{tmpl: "plain literal", want: "plain literal"},
		{tmpl: "cost $5 and $${env:X}", want: "cost $5 and ${env:X}"},
		{tmpl: "", want: ""},
		{tmpl: "${env:SMTP_PASSWORD}", wantErr: "${env:SMTP_PASSWORD}: not set"},
		{tmpl: "${env:EMPTY}", wantErr: "${env:EMPTY}: set but empty"},
		{tmpl: "${file:/run/empty}", wantErr: "${file:/run/empty}: file is empty"},
		{tmpl: "${file:/x}", wantErr: "${file:/x}: no such file"},
		{tmpl: secretValue + " ${env:A} ${env:B}", wantErr: "${env:A}: not set\n${env:B}: not set"},
		{tmpl: secretValue + "${env:", wantErr: errMalformed.Error()},
		{tmpl: "${env:1X}", wantErr: errMalformed.Error()},
		{tmpl: "${file:}", wantErr: errMalformed.Error()},
		{tmpl: "${" + secretValue + "}", wantErr: errMalformed.Error()},
	}
	for _, tt := range tests {
		t.Run(tt.tmpl, func(t *testing.T) {
			got, err := Secret{tmpl: tt.tmpl}.Resolve(fakeResolver())
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("Resolve = %q, %v; want error %q", got, err, tt.wantErr)
				}
				if got != "" {
					t.Errorf("Resolve returned %q alongside an error", got)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("Resolve = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestResolveErrorsIs(t *testing.T) {
	_, err := Secret{tmpl: "${file:/x}"}.Resolve(fakeResolver())
	var re *RefError
	if !errors.Is(err, fs.ErrNotExist) || !errors.As(err, &re) || re.Ref != "${file:/x}" {
		t.Errorf("err = %#v", err)
	}
}

func TestResolveZeroResolverUsesOS(t *testing.T) {
	t.Setenv("RUGWATCH_TEST_SECRET", secretValue)
	f := filepath.Join(t.TempDir(), "tok")
	if err := os.WriteFile(f, []byte(secretValue+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := NewSecret("${env:RUGWATCH_TEST_SECRET}/${file:" + f + "}")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []Resolver{{}, DefaultResolver()} {
		got, err := s.Resolve(r)
		if err != nil || got != secretValue+"/"+secretValue {
			t.Errorf("Resolve = %q, %v", got, err)
		}
	}
	if _, err := (Secret{tmpl: "${file:" + t.TempDir() + "/missing}"}).Resolve(Resolver{}); err == nil || !strings.HasSuffix(err.Error(), ": no such file") {
		t.Errorf("missing file: %v", err)
	}
	if _, err := (Secret{tmpl: "${file:" + t.TempDir() + "}"}).Resolve(Resolver{}); err == nil || !strings.HasSuffix(err.Error(), ": is a directory") {
		t.Errorf("directory: %v", err)
	}
}

func TestNewSecret(t *testing.T) {
	if _, err := NewSecret(secretValue + "${nope"); err == nil || strings.Contains(err.Error(), secretValue) {
		t.Errorf("NewSecret malformed: %v", err)
	}
	s, err := NewSecret("Bearer ${env:T}")
	if err != nil || s.Template() != "Bearer ${env:T}" || s.IsZero() {
		t.Errorf("NewSecret = %v, %v", s.Template(), err)
	}
	if !(Secret{}).IsZero() {
		t.Error("zero Secret not IsZero")
	}
}

// secretConfig holds SUPERSECRET as a literal in every secret field, and as
// the resolved value of its references.
const secretConfig = `
servers:
  - name: local
    command: srv
    env: {A: SUPERSECRET, B: "${env:SECRET}"}
  - name: remote
    url: https://h.example/mcp
    headers: {Authorization: "Bearer SUPERSECRET", X-Other: "${file:/run/secret}"}
notify:
  webhooks:
    - name: ops
      url: https://hooks.example/x
      secret: whsec_SUPERSECRET
      secrets: ["${env:SECRET}"]
      headers: {X-Token: SUPERSECRET}
  email:
    - name: security
      host: smtp.example.com
      username: rugwatch
      password: SUPERSECRET
      from: a@example.com
      to: [b@example.com]
`

func TestSecretNeverPrinted(t *testing.T) {
	c := mustParse(t, secretConfig)
	// The references do resolve to the secret: the test below is not vacuous.
	if v, err := c.Servers[0].Env["B"].Resolve(fakeResolver()); err != nil || v != secretValue {
		t.Fatalf("Resolve = %q, %v", v, err)
	}
	if err := c.CheckReferences(fakeResolver()); err != nil {
		t.Fatalf("CheckReferences: %v", err)
	}

	var outputs []string
	for _, v := range []any{c, *c, c.Servers, c.Servers[1], c.Notify, c.Notify.Email[0],
		c.Notify.Email[0].Password, c.Servers[1].Headers["Authorization"]} {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%T"} {
			outputs = append(outputs, fmt.Sprintf(verb, v))
		}
		j, err := json.Marshal(v)
		if err != nil {
			t.Fatalf("json.Marshal(%T): %v", v, err)
		}
		outputs = append(outputs, string(j))
		y, err := yaml.Marshal(v)
		if err != nil {
			t.Fatalf("yaml.Marshal(%T): %v", v, err)
		}
		outputs = append(outputs, string(y))
	}
	pw := c.Notify.Email[0].Password
	text, _ := pw.MarshalText()
	outputs = append(outputs, pw.String(), pw.GoString(), string(text))
	for _, o := range outputs[len(outputs)-3:] {
		if o != redacted {
			t.Errorf("printed %q, want %q", o, redacted)
		}
	}
	var logs bytes.Buffer
	for _, h := range []slog.Handler{slog.NewJSONHandler(&logs, nil), slog.NewTextHandler(&logs, nil)} {
		l := slog.New(h)
		l.Info("config", "config", c, "password", c.Notify.Email[0].Password,
			"headers", c.Servers[1].Headers, slog.Any("secret", c.Notify.Webhooks[0].Secret))
		l.Info("group", slog.Group("g", "password", c.Notify.Email[0].Password))
	}
	outputs = append(outputs, logs.String())
	for _, o := range outputs {
		if strings.Contains(o, secretValue) {
			t.Errorf("secret printed: %s", o)
		}
	}
	if !strings.Contains(logs.String(), redacted) {
		t.Errorf("logs do not show %s: %s", redacted, logs.String())
	}
}

func TestSecretNotInErrors(t *testing.T) {
	// A reference that fails in a secret with literal parts.
	c := mustParse(t, `
servers:
  - name: remote
    url: https://h.example/mcp
    headers:
      Authorization: "Bearer SUPERSECRET ${env:MISSING_TOKEN}"
      X-File: "${file:/nope}"
`)
	err := c.CheckReferences(fakeResolver())
	want := []string{
		`rugwatch.yaml:6: servers[0] "remote": headers.Authorization: ${env:MISSING_TOKEN}: not set`,
		`rugwatch.yaml:7: servers[0] "remote": headers.X-File: ${file:/nope}: no such file`,
	}
	if err == nil || err.Error() != strings.Join(want, "\n") {
		t.Errorf("CheckReferences:\n%v\nwant:\n%s", err, strings.Join(want, "\n"))
	}

	// Validation errors about secret fields never quote them.
	for _, yml := range []string{
		"servers:\n  - name: a\n    command: x\n    env: {A: \"SUPERSECRET${env:\"}\n",
		"servers:\n  - name: a\n    command: x\n    env: {A: [SUPERSECRET]}\n",
		"servers:\n  - name: a\n    url: https://h/\n    headers: {\"Bad Name\": SUPERSECRET}\n",
		"notify:\n  email:\n    - {name: m, host: h, password: SUPERSECRET, from: a@b.c, to: [d@e.f]}\n",
		"notify:\n  webhooks:\n    - {name: w, url: ftp://h, secret: \"${SUPERSECRET}\"}\n",
	} {
		_, err := parse(t, yml)
		if err == nil {
			t.Errorf("Parse(%q) succeeded", yml)
			continue
		}
		if strings.Contains(err.Error(), secretValue) {
			t.Errorf("error quotes the secret: %v", err)
		}
	}

	// A resolved value never reaches an error either, even when a later
	// reference in the same secret fails.
	_, err = Secret{tmpl: "${env:SECRET}${file:/run/secret}${env:NOPE}"}.Resolve(fakeResolver())
	if err == nil || err.Error() != "${env:NOPE}: not set" {
		t.Errorf("err = %v", err)
	}
	if s := fmt.Sprintf("%v %+v %#v", err, err, err); strings.Contains(s, secretValue) {
		t.Errorf("formatted error leaks: %s", s)
	}
}

func TestRelativeFileRefAgainstConfigDir(t *testing.T) {
	c, err := Parse([]byte("servers:\n  - name: a\n    command: x\n    env: {T: \"${file:rel.tk}\"}\n"), "/conf/dir/rugwatch.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if v, err := c.Servers[0].Env["T"].Resolve(fakeResolver()); err != nil || v != secretValue {
		t.Errorf("Resolve = %q, %v", v, err)
	}
}
