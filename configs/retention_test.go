package configs

import (
	"strings"
	"testing"
	"time"
)

func TestRetentionAndChurnLimit(t *testing.T) {
	for _, c := range []struct {
		yml  string
		want time.Duration
	}{
		{"", 0},
		{"retention: 0\n", 0},
		{"retention: 90d\n", 90 * 24 * time.Hour},
		{"retention: 36h\n", 36 * time.Hour},
	} {
		cfg := mustParse(t, c.yml)
		if cfg.Retention.Duration() != c.want {
			t.Errorf("%q: retention %s, want %s", c.yml, cfg.Retention, c.want)
		}
		if cfg.Limits.MaxNewToolsPerHour != 500 {
			t.Errorf("%q: limits.max_new_tools_per_hour %d, want the default 500", c.yml, cfg.Limits.MaxNewToolsPerHour)
		}
	}
	if got := mustParse(t, "retention: 90d\nsigning_key: /k\n").SigningKey; got != "/k" {
		t.Errorf("signing_key with retention: %q", got)
	}
	for _, c := range []struct{ yml, want string }{
		{"retention: 90s\n", "rugwatch.yaml:1: retention: must be a duration"},
		{"retention: -1d\n", "rugwatch.yaml:1: retention: must be a duration"},
		{"retention: 90 days\n", "rugwatch.yaml:1: retention: must be a duration"},
		{"limits:\n  max_new_tools_per_hour: 0\n", "rugwatch.yaml:2: limits.max_new_tools_per_hour: must be greater than 0"},
	} {
		_, err := parse(t, c.yml)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %v, want %q", c.yml, err, c.want)
		}
	}
}
