package configs

import (
	"time"
)

// Classifier is an external content classifier (a local model, a vendor
// tool wrapped in a script): a command that reads one JSON request on
// stdin and prints {"findings": [...]}. It is run sandboxed like a stdio
// server, for each new or changed tool description and, in the proxy,
// for each tool result's text.
type Classifier struct {
	Command []string `yaml:"command"`
	Timeout Duration `yaml:"timeout"`  // default 2s, at most 1m
	OnError string   `yaml:"on_error"` // flag (default: a warning finding) | ignore
}

const (
	defaultClassifierTimeout = 2 * time.Second
	maxClassifierTimeout     = time.Minute
)

// EffectiveTimeout is the timeout with its default.
func (c *Classifier) EffectiveTimeout() time.Duration {
	if c.Timeout <= 0 {
		return defaultClassifierTimeout
	}
	return time.Duration(c.Timeout)
}

// Enabled says a classifier is configured.
func (c *Classifier) Enabled() bool { return len(c.Command) > 0 }

func (v *validator) validateClassifier(c *Config) {
	cl := &c.Classifier
	if !c.has("classifier") {
		return
	}
	if len(cl.Command) == 0 || cl.Command[0] == "" {
		v.fail("classifier.command", "needs the command to run, e.g. [\"/usr/local/bin/classify\", \"--json\"]")
	}
	if time.Duration(cl.Timeout) < 0 || time.Duration(cl.Timeout) > maxClassifierTimeout {
		v.fail("classifier.timeout", "must be between 0 (the default, 2s) and 1m")
	}
	switch cl.OnError {
	case "", "flag", "ignore":
	default:
		v.fail("classifier.on_error", "must be flag or ignore, not %q", cl.OnError)
	}
}
