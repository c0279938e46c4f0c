package configs

import (
	"strings"
	"testing"
)

// egress_mode sits beside egress: a server's mode overrides the default
// one while the allow-lists still add up, and `egress: [..]` keeps its
// one shape.
func TestEgressMode(t *testing.T) {
	c, err := parse(t, `defaults:
  egress: ["api.example.com:443"]
  egress_mode: pinned
servers:
  - name: a
    command: x
    egress: ["b.example.com:443"]
  - name: b
    command: x
    egress_mode: alert
`)
	if err != nil {
		t.Fatal(err)
	}
	a, b := c.Servers[0], c.Servers[1]
	if got := a.EffectiveEgressMode(c.Defaults); got != EgressPinned {
		t.Errorf("a: %q, want the default pinned", got)
	}
	if got := b.EffectiveEgressMode(c.Defaults); got != EgressAlert {
		t.Errorf("b: %q, want its own alert", got)
	}
	if got := a.EffectiveEgress(c.Defaults); strings.Join(got, ",") != "api.example.com:443,b.example.com:443" {
		t.Errorf("a's allow-list %q", got)
	}
	if got := (Server{}).EffectiveEgressMode(Defaults{}); got != EgressAlert {
		t.Errorf("unset: %q, want alert", got)
	}

	for yml, want := range map[string]string{
		"defaults:\n  egress_mode: strict\n":                                    `rugwatch.yaml:2: defaults.egress_mode: must be alert`,
		"servers:\n  - name: a\n    command: x\n    egress_mode: \"\"\n":        `rugwatch.yaml:4: servers[0] "a": egress_mode: must be alert`,
		"servers:\n  - name: a\n    url: https://h/\n    egress_mode: pinned\n": `rugwatch.yaml:4: servers[0] "a": egress_mode: only for command servers`,
		"defaults:\n  egress: {pinned: true}\n":                                 `rugwatch.yaml:2:`,
	} {
		if _, err := parse(t, yml); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %s", yml, err, want)
		}
	}
}
