package configs

import (
	"reflect"
	"strings"
	"testing"
)

func TestPlanReload(t *testing.T) {
	token, err := NewSecret("${env:RUGWATCH_HTTP_TOKEN}")
	if err != nil {
		t.Fatal(err)
	}
	running := &Config{DataDir: "/var/lib/rugwatch", HTTPListen: "0.0.0.0:9464", HTTPToken: token, ProxyListen: "127.0.0.1:9465",
		TrustedKeys: []string{"/etc/rugwatch/alice.pub"}}
	cases := []struct {
		name     string
		next     func(c *Config)
		deferred []string
		refused  string
		check    func(t *testing.T, c *Config)
	}{
		{name: "nothing moved", next: func(*Config) {}},
		{name: "listeners and data_dir stay where they started",
			next: func(c *Config) {
				c.DataDir, c.HTTPListen, c.ProxyListen = "/tmp/elsewhere", "0.0.0.0:1", "127.0.0.1:2"
			},
			deferred: []string{"data_dir", "http_listen", "proxy_listen"},
			check: func(t *testing.T, c *Config) {
				if c.DataDir != running.DataDir || c.HTTPListen != running.HTTPListen || c.ProxyListen != running.ProxyListen {
					t.Errorf("running values not kept: %+v", c)
				}
			}},
		// Moving http_listen to loopback and dropping the token would, if
		// the move applied, leave the bound public listener unguarded.
		{name: "the bound public listener keeps needing its token",
			next: func(c *Config) {
				c.HTTPListen, c.HTTPToken = "127.0.0.1:9464", Secret{}
			},
			refused: "no http_token"},
		{name: "other keys apply now",
			next: func(c *Config) { c.TrustedKeys = nil; c.ApproveFirstSeen = true },
			check: func(t *testing.T, c *Config) {
				if len(c.TrustedKeys) != 0 || !c.ApproveFirstSeen {
					t.Errorf("trusted_keys or approve_first_seen not applied: %+v", c)
				}
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			next := *running
			next.TrustedKeys = append([]string(nil), running.TrustedKeys...)
			tc.next(&next)
			before := next
			got, deferred, err := PlanReload(running, &next)
			if !reflect.DeepEqual(before, next) {
				t.Fatal("PlanReload changed the config it was given")
			}
			if tc.refused != "" {
				if err == nil || !strings.Contains(err.Error(), tc.refused) {
					t.Fatalf("error %v, want one saying %q", err, tc.refused)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var keys []string
			for _, d := range deferred {
				keys = append(keys, d.Key)
			}
			if strings.Join(keys, ",") != strings.Join(tc.deferred, ",") {
				t.Errorf("deferred %v, want %v", keys, tc.deferred)
			}
			if tc.check != nil {
				tc.check(t, got)
			}
		})
	}
}

// An ephemeral daemon's data directory and keys are temporary ones only
// it knows: a reload keeps them whatever the file says.
func TestPlanReloadEphemeral(t *testing.T) {
	running := &Config{Ephemeral: true, DataDir: "/tmp/rugwatch-123", TrustedKeys: []string{"/tmp/rugwatch-123/k.pub"},
		SigningKey: "/tmp/rugwatch-123/k.key", ApproveFirstSeen: true}
	next := &Config{Ephemeral: true, ApproveFirstSeen: true}
	got, deferred, err := PlanReload(running, next)
	if err != nil {
		t.Fatal(err)
	}
	if len(deferred) != 0 || got.DataDir != running.DataDir || got.SigningKey != running.SigningKey || len(got.TrustedKeys) != 1 {
		t.Fatalf("ephemeral reload: %+v deferred %v", got, deferred)
	}
}
