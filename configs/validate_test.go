package configs

import (
	"strings"
	"testing"
)

const okServer = "servers:\n  - name: a\n    command: srv\n"

func TestValidationErrors(t *testing.T) {
	tests := []struct {
		name string
		yml  string
		want string // one whole line of the error
	}{
		{"ephemeral with data_dir", "ephemeral: true\ndata_dir: /var/lib/rugwatch\n",
			`rugwatch.yaml:2: data_dir: not allowed with ephemeral: true, which makes a fresh data dir and key pair for each run`},
		{"bad name", "servers:\n  - name: Bad_Name\n    command: x\n",
			`rugwatch.yaml:2: servers[0] "Bad_Name": name: must match [a-z0-9][a-z0-9._-]*`},
		{"missing name", "servers:\n  - command: x\n",
			`rugwatch.yaml:2: servers[0]: name: is required`},
		{"duplicate name", "servers:\n  - name: a\n    command: x\n  - name: a\n    command: y\n",
			`rugwatch.yaml:4: servers[1] "a": name: duplicate of servers[0]`},
		{"neither command nor url", "servers:\n  - name: a\n    watch: true\n",
			`rugwatch.yaml:2: servers[0] "a": needs command (a stdio server) or url (an http or sse server)`},
		{"both command and url", "servers:\n  - name: a\n    command: x\n    url: http://h/\n",
			`rugwatch.yaml:2: servers[0] "a": has both command and url; a server is one or the other`},
		{"url scheme", "servers:\n  - name: a\n  - name: remote\n    url: ftp://h/x\n",
			`rugwatch.yaml:4: servers[1] "remote": url: must be http or https`},
		{"url relative", "servers:\n  - name: r\n    url: /mcp\n",
			`rugwatch.yaml:3: servers[0] "r": url: must be http or https`},
		{"url no host", "servers:\n  - name: r\n    url: \"http:///mcp\"\n",
			`rugwatch.yaml:3: servers[0] "r": url: must have a host`},
		{"url credentials", "servers:\n  - name: r\n    url: https://u:p@h/mcp\n",
			`rugwatch.yaml:3: servers[0] "r": url: must not contain credentials; use headers with a ${env:} or ${file:} reference`},
		{"stdio transport with url", "servers:\n  - name: r\n    url: https://h/\n    transport: stdio\n",
			`rugwatch.yaml:4: servers[0] "r": transport: must be http or sse for a url`},
		{"sse with command", "servers:\n  - name: r\n    command: x\n    transport: sse\n",
			`rugwatch.yaml:4: servers[0] "r": transport: must be stdio (or left out) for a command`},
		{"unknown transport", "servers:\n  - name: r\n    url: https://h/\n    transport: ws\n",
			`rugwatch.yaml:4: servers[0] "r": transport: must be http or sse for a url`},
		{"headers with command", "servers:\n  - name: r\n    command: x\n    headers: {A: b}\n",
			`rugwatch.yaml:4: servers[0] "r": headers: only for url servers`},
		{"env with url", "servers:\n  - name: r\n    url: https://h/\n    env: {A: b}\n",
			`rugwatch.yaml:4: servers[0] "r": env: only for command servers`},
		{"bad schedule", "servers:\n  - name: r\n    command: x\n    schedule: every day\n",
			`rugwatch.yaml:4: servers[0] "r": schedule: not a cron spec or @every <duration>: expected exactly 5 fields, found 2: [every day]`},
		{"bad @every", "servers:\n  - name: r\n    command: x\n    schedule: \"@every soon\"\n",
			`rugwatch.yaml:4: servers[0] "r": schedule: @every needs a duration like "@every 5m"`},
		{"@every too short", "defaults:\n  schedule: \"@every 10ms\"\n",
			`rugwatch.yaml:2: defaults.schedule: @every needs at least 1s`},
		{"empty schedule", "defaults:\n  schedule: \"\"\n",
			`rugwatch.yaml:2: defaults.schedule: must not be empty`},
		{"zero timeout", "servers:\n  - name: r\n    command: x\n    timeout: 0s\n",
			`rugwatch.yaml:4: servers[0] "r": timeout: must be greater than 0`},
		{"negative timeout", "defaults:\n  timeout: -5s\n",
			`rugwatch.yaml:2: defaults.timeout: must be greater than 0`},
		{"timeout not a duration", "defaults:\n  timeout: 30\n",
			`rugwatch.yaml:2: defaults.timeout: must be a duration like "30s"`},
		{"bad env name", "servers:\n  - name: r\n    command: x\n    env:\n      1BAD: v\n",
			`rugwatch.yaml:5: servers[0] "r": env.1BAD: not a valid environment variable name`},
		{"bad header name", "servers:\n  - name: r\n    url: https://h/\n    headers:\n      \"Bad Header\": v\n",
			`rugwatch.yaml:5: servers[0] "r": headers.Bad Header: not a valid header name`},
		{"reserved header", "servers:\n  - name: r\n    url: https://h/\n    headers:\n      host: v\n",
			`rugwatch.yaml:5: servers[0] "r": headers.host: set by rugwatch itself`},
		// A configured Accept replaced the SDK's on every request, and the
		// server then answered in a form the client refuses.
		{"accept on a server", "servers:\n  - name: r\n    url: https://h/\n    headers:\n      Accept: text/html\n",
			`rugwatch.yaml:5: servers[0] "r": headers.Accept: set by rugwatch itself`},
		{"a 2026-07-28 parameter header", "servers:\n  - name: r\n    url: https://h/\n    headers:\n      mcp-param-path: /etc\n",
			`rugwatch.yaml:5: servers[0] "r": headers.mcp-param-path: set by rugwatch itself`},
		{"malformed reference", "servers:\n  - name: r\n    command: x\n    env:\n      A: \"${vault:x}\"\n",
			`rugwatch.yaml:5: servers[0] "r": env.A: malformed reference: want ${env:NAME} or ${file:PATH} (write $${ for a literal ${)`},
		{"args not a list", "servers:\n  - name: r\n    command: x\n    args: -y\n",
			`rugwatch.yaml:4: servers[0] "r": args: must be a list`},
		{"watch not bool", "servers:\n  - name: r\n    command: x\n    watch: maybe\n",
			`rugwatch.yaml:4: servers[0] "r": watch: must be true or false`},
		{"duplicate key", okServer + "    command: y\n",
			`rugwatch.yaml:4: servers[0] "a": command: duplicate key (first on line 3)`},
		{"signing key without approve_first_seen", "signing_key: k\n",
			`rugwatch.yaml:1: signing_key: only allowed with approve_first_seen: true (the daemon holds no private key otherwise), or with retention, whose checkpoints it signs`},
		{"http_listen public", "http_listen: 0.0.0.0:9000\n",
			`rugwatch.yaml:1: http_listen: ` + nonLoopback},
		{"http_listen all interfaces", "http_listen: \":9000\"\n",
			`rugwatch.yaml:1: http_listen: ` + nonLoopback},
		{"http_listen no port", "http_listen: localhost\n",
			`rugwatch.yaml:1: http_listen: must be host:port`},
		{"concurrency zero", "concurrency: 0\n",
			`rugwatch.yaml:1: concurrency: must be greater than 0`},
		{"concurrency not int", "concurrency: many\n",
			`rugwatch.yaml:1: concurrency: must be an integer`},
		{"limit negative", "limits:\n  max_depth: -1\n",
			`rugwatch.yaml:2: limits.max_depth: must be greater than 0`},
		{"webhook url", "notify:\n  webhooks:\n    - name: ops\n      url: hooks.example.com\n",
			`rugwatch.yaml:4: notify.webhooks[0] "ops": url: must be http or https`},
		{"webhook without secret", "notify:\n  webhooks:\n    - name: ops\n      url: https://h/\n",
			`rugwatch.yaml:3: notify.webhooks[0] "ops": secret: is required: a Standard Webhooks whsec_… secret, as a ${env:} or ${file:} reference`},
		{"webhook severity", "notify:\n  webhooks:\n    - name: ops\n      url: https://h/\n      min_severity: loud\n",
			`rugwatch.yaml:5: notify.webhooks[0] "ops": min_severity: must be info, warning or critical`},
		{"channel name clash", "notify:\n  webhooks: [{name: ops, url: \"https://h/\"}]\n  email:\n    - name: ops\n      host: h\n      from: a@b.c\n      to: [d@e.f]\n",
			`rugwatch.yaml:4: notify.email[0] "ops": name: duplicate of notify.webhooks[0] (channel names are unique across notify)`},
		{"email tls none remote", "notify:\n  email:\n    - name: m\n      host: smtp.example.com\n      tls: none\n      from: a@b.c\n      to: [d@e.f]\n",
			`rugwatch.yaml:5: notify.email[0] "m": tls: none is only allowed for a loopback host (localhost, 127.0.0.0/8, ::1)`},
		{"email tls unknown", "notify:\n  email:\n    - name: m\n      host: h\n      tls: ssl\n      from: a@b.c\n      to: [d@e.f]\n",
			`rugwatch.yaml:5: notify.email[0] "m": tls: must be starttls, tls or none`},
		{"email port", "notify:\n  email:\n    - name: m\n      host: h\n      port: 70000\n      from: a@b.c\n      to: [d@e.f]\n",
			`rugwatch.yaml:5: notify.email[0] "m": port: must be between 1 and 65535`},
		{"email from", "notify:\n  email:\n    - name: m\n      host: h\n      from: not an address\n      to: [d@e.f]\n",
			`rugwatch.yaml:5: notify.email[0] "m": from: not an email address`},
		{"email to", "notify:\n  email:\n    - name: m\n      host: h\n      from: a@b.c\n      to: [d@e.f, nope]\n",
			`rugwatch.yaml:6: notify.email[0] "m": to[1]: not an email address`},
		{"email no to", "notify:\n  email:\n    - name: m\n      host: h\n      from: a@b.c\n",
			`rugwatch.yaml:3: notify.email[0] "m": to: needs at least one address`},
		{"email password without username", "notify:\n  email:\n    - name: m\n      host: h\n      password: ${env:P}\n      from: a@b.c\n      to: [d@e.f]\n",
			`rugwatch.yaml:5: notify.email[0] "m": password: needs a username`},
		{"control characters escaped", "servers:\n  - name: r\n    command: x\n    env:\n      \"A\\nB\\u202e\": v\n",
			`rugwatch.yaml:5: servers[0] "r": env.A\nB\u202e: not a valid environment variable name`},
		{"syntax error", "servers:\n  - name: a\n    command: [x\n",
			`rugwatch.yaml:2: did not find expected ',' or ']'`},
		{"two documents", "concurrency: 1\n---\nconcurrency: 2\n",
			`rugwatch.yaml:2: only one YAML document is allowed`},
		{"top level not a mapping", "- a\n",
			`rugwatch.yaml:1: must be a mapping`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parse(t, tt.yml)
			if err == nil {
				t.Fatalf("Parse succeeded: %+v", c)
			}
			if !containsLine(err.Error(), tt.want) {
				t.Errorf("error lacks line\n%s\ngot:\n%v", tt.want, err)
			}
		})
	}
}

func TestValidConfigs(t *testing.T) {
	for _, yml := range []string{
		"http_listen: 127.0.0.1:9464\n",
		"http_listen: \"[::1]:0\"\n",
		"http_listen: localhost:8080\n",
		"approve_first_seen: true\nsigning_key: k\n",
		"servers:\n  - name: a.b-c_1\n    url: https://h/mcp\n    transport: sse\n",
		"servers:\n  - name: a\n    command: x\n    transport: stdio\n    schedule: \"*/5 * * * *\"\n",
		"servers:\n  - name: a\n    command: x\n    schedule: \"@hourly\"\n",
		"notify:\n  email:\n    - {name: m, host: 127.0.0.2, tls: none, from: \"Rug <a@b.c>\", to: [d@e.f]}\n",
		"notify:\n  email:\n    - {name: m, host: \"::1\", tls: none, from: a@b.c, to: [d@e.f]}\n",
		"notify:\n  webhooks:\n    - {name: w, url: \"http://127.0.0.1:1/x\", min_severity: info, secret: whsec_abc}\n",
		// Anchors and aliases work like any other value.
		"defaults:\n  schedule: &s \"@every 1m\"\nservers:\n  - name: a\n    command: x\n    schedule: *s\n",
	} {
		if _, err := parse(t, yml); err != nil {
			t.Errorf("Parse(%q): %v", yml, err)
		}
	}
}

func TestUnknownKeys(t *testing.T) {
	tests := []struct{ name, yml, want string }{
		{"top level", "data_dir: d\nservrs: []\n",
			`rugwatch.yaml:2: unknown key "servrs" at top level`},
		{"server", "servers:\n  - name: everything\n    command: x\n    scheduel: \"@every 1m\"\n",
			`rugwatch.yaml:4: unknown key "scheduel" in servers[0] "everything"`},
		{"server without name", "servers:\n  - command: x\n    nme: a\n",
			`rugwatch.yaml:3: unknown key "nme" in servers[0]`},
		{"email", "notify:\n  email:\n    - name: security\n      host: h\n      from: a@b.c\n      to: [d@e.f]\n      pasword: x\n",
			`rugwatch.yaml:7: unknown key "pasword" in notify.email[0] "security"`},
		{"webhook", "notify:\n  webhooks:\n    - name: ops\n      url: https://h/\n      secert: x\n",
			`rugwatch.yaml:5: unknown key "secert" in notify.webhooks[0] "ops"`},
		{"defaults", "defaults:\n  intervl: 5m\n",
			`rugwatch.yaml:2: unknown key "intervl" in defaults`},
		{"notify", "notify:\n  slack: []\n",
			`rugwatch.yaml:2: unknown key "slack" in notify`},
		{"limits", "limits:\n  max_bytes: 1\n",
			`rugwatch.yaml:2: unknown key "max_bytes" in limits`},
		{"yaml-ignored field", "path: /etc/x\n",
			`rugwatch.yaml:1: unknown key "path" at top level`},
		{"Line is not a key", "servers:\n  - name: a\n    command: x\n    line: 3\n",
			`rugwatch.yaml:4: unknown key "line" in servers[0] "a"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parse(t, tt.yml)
			if err == nil || !containsLine(err.Error(), tt.want) {
				t.Errorf("error lacks line\n%s\ngot:\n%v", tt.want, err)
			}
		})
	}
}

func TestAllErrorsReported(t *testing.T) {
	_, err := parse(t, `servers:
  - name: a
    command: x
    bogus: 1
  - name: a
    url: ftp://h
notify:
  email:
    - name: m
      host: h
      port: 0
      from: a@b.c
      to: [d@e.f]
`)
	if err == nil {
		t.Fatal("no error")
	}
	want := []string{
		`rugwatch.yaml:4: unknown key "bogus" in servers[0] "a"`,
		`rugwatch.yaml:5: servers[1] "a": name: duplicate of servers[0]`,
		`rugwatch.yaml:6: servers[1] "a": url: must be http or https`,
		`rugwatch.yaml:11: notify.email[0] "m": port: must be between 1 and 65535`,
	}
	if got := strings.Split(err.Error(), "\n"); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got:\n%v\nwant:\n%s", err, strings.Join(want, "\n"))
	}
}

func TestTypeErrorNotDoubled(t *testing.T) {
	// A value that failed to decode is reported once, not again by
	// validation as a zero value.
	_, err := parse(t, okServer+"notify:\n  email:\n    - {name: m, host: h, port: abc, from: a@b.c, to: [d@e.f]}\n")
	if err == nil || strings.Count(err.Error(), "port") != 1 {
		t.Errorf("got:\n%v", err)
	}
}
