package configs

import (
	"errors"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Retention is how long the event log keeps an event: "90d", "36h" or
// any Go duration of at least an hour; 0 (or absent) keeps every event.
type Retention time.Duration

// minRetention keeps a typo ("90s" for "90d") from pruning the log to
// nothing.
const minRetention = time.Hour

// Duration is the retention as a time.Duration; 0 keeps every event.
func (r Retention) Duration() time.Duration { return time.Duration(r) }

// String writes whole days as "Nd".
func (r Retention) String() string {
	d := time.Duration(r)
	if d > 0 && d%(24*time.Hour) == 0 {
		return strconv.FormatInt(int64(d/(24*time.Hour)), 10) + "d"
	}
	return d.String()
}

// MarshalYAML implements yaml.Marshaler.
func (r Retention) MarshalYAML() (any, error) { return r.String(), nil }

// UnmarshalYAML implements yaml.Unmarshaler.
func (r *Retention) UnmarshalYAML(n *yaml.Node) error {
	const want = `must be a duration like "90d" or "36h" (at least 1h), or 0 to keep every event`
	if n.Kind != yaml.ScalarNode {
		return errors.New(want)
	}
	d, err := parseRetention(strings.TrimSpace(n.Value))
	if err != nil || d < 0 || (d > 0 && d < minRetention) {
		return errors.New(want)
	}
	*r = Retention(d)
	return nil
}

// parseRetention reads "0", "<N>d" (whole days) or a Go duration.
func parseRetention(s string) (time.Duration, error) {
	if s == "0" {
		return 0, nil
	}
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseUint(days, 10, 16)
		if err != nil {
			return 0, err
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	return time.ParseDuration(s)
}
